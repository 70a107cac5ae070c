"""Certificates for the local control plane, made with the `openssl` command line (EC P-256, 10 years)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hack.testenv.procs import require_binary

_DAYS = "3650"


class CertificateAuthority:
    """A throwaway CA in `directory` (ca.crt / ca.key) that signs serving and client certificates."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.cert = directory / "ca.crt"
        self.key = directory / "ca.key"
        self.openssl = require_binary("openssl", "run `make system-deps` (installs openssl)")

    def _run(self, *args: str) -> None:
        result = subprocess.run([self.openssl, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed (exit {result.returncode}): {result.stderr.strip()}")

    def _new_key(self, path: Path) -> None:
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
        path.chmod(0o600)

    def create(self, common_name: str = "heurimentor-local-ca") -> CertificateAuthority:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._new_key(self.key)
        self._run(
            "req",
            "-x509",
            "-new",
            "-key",
            str(self.key),
            "-out",
            str(self.cert),
            "-days",
            _DAYS,
            "-subj",
            f"/CN={common_name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )
        return self

    def issue(
        self,
        name: str,
        common_name: str,
        organizations: tuple[str, ...] = (),
        *,
        server_names: tuple[str, ...] = (),
        server_ips: tuple[str, ...] = (),
    ) -> tuple[Path, Path]:
        """Sign `<name>.crt` / `<name>.key`: a client cert (CN=user, O=groups) or, with SANs, a serving cert."""
        key, csr, cert, ext = (self.dir / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
        self._new_key(key)
        subject = f"/CN={common_name}" + "".join(f"/O={o}" for o in organizations)
        self._run("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
        usages = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
        if server_names or server_ips:
            sans = [f"DNS:{n}" for n in server_names] + [f"IP:{ip}" for ip in server_ips]
            usages += ["extendedKeyUsage=serverAuth,clientAuth", "subjectAltName=" + ",".join(sans)]
        else:
            usages.append("extendedKeyUsage=clientAuth")
        ext.write_text("\n".join(usages) + "\n")
        self._run(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.cert),
            "-CAkey",
            str(self.key),
            "-CAcreateserial",
            "-out",
            str(cert),
            "-days",
            _DAYS,
            "-extfile",
            str(ext),
        )
        csr.unlink()
        ext.unlink()
        return cert, key

    def rsa_key_pair(self, name: str) -> tuple[Path, Path]:
        """`<name>.key` / `<name>.pub`: an RSA pair, for signing service-account tokens."""
        key, pub = self.dir / f"{name}.key", self.dir / f"{name}.pub"
        self._run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
        key.chmod(0o600)
        self._run("pkey", "-in", str(key), "-pubout", "-out", str(pub))
        return key, pub
