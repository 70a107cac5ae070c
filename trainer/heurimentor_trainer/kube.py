"""The one apiserver call a worker makes (patch its own pod), over httpx: the trainer image carries
no Kubernetes client library.

Credentials: in a pod, the ServiceAccount token and CA the kubelet mounts (the token is re-read on
every call, as the kubelet rotates it); outside, a kubeconfig's current context (server, CA,
bearer token or client certificate).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(RuntimeError):
    """The apiserver could not be reached or refused the request; the message says which and why."""


def _resolve(base: Path, value: str) -> str:
    return str(base / value) if not os.path.isabs(value) else value


def _load_client_cert(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # load_cert_chain reads files only; these live just long enough to be read.
    with tempfile.TemporaryDirectory(prefix="heurimentor-kube-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        context.load_cert_chain(cert, key)


class PodPatcher:
    """Merge-patches pods through the apiserver, as the in-cluster ServiceAccount or a kubeconfig user."""

    def __init__(self, kubeconfig: str | None = None, *, timeout_s: float = 5.0):
        self._token_file: Path | None = None
        self._token: str | None = None
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if host and (SERVICE_ACCOUNT_DIR / "token").exists():
            server = f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
            self._token_file = SERVICE_ACCOUNT_DIR / "token"
        else:
            server, verify = self._from_kubeconfig(Path(kubeconfig or Path.home() / ".kube" / "config"))
        self._http = httpx.Client(base_url=server, verify=verify, timeout=timeout_s)

    def _from_kubeconfig(self, path: Path) -> tuple[str, ssl.SSLContext | bool]:
        try:
            doc: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
            context_name = doc["current-context"]
            context = next(c["context"] for c in doc["contexts"] if c["name"] == context_name)
            cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
            user = next((u.get("user") or {} for u in doc.get("users") or [] if u["name"] == context.get("user")), {})
            server = cluster["server"]
        except (OSError, yaml.YAMLError, KeyError, StopIteration, TypeError) as e:
            raise KubeError(f"kubeconfig {path}: no usable current context ({type(e).__name__}: {e})") from e
        base = path.parent
        verify: ssl.SSLContext | bool = True
        if server.startswith("https://"):
            if cluster.get("insecure-skip-tls-verify"):
                verify = False
            else:
                verify = ssl.create_default_context()
                if cluster.get("certificate-authority-data"):
                    verify.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
                elif cluster.get("certificate-authority"):
                    verify.load_verify_locations(cafile=_resolve(base, cluster["certificate-authority"]))
                if user.get("client-certificate-data") or user.get("client-certificate"):

                    def read(field: str) -> bytes:
                        if user.get(f"{field}-data"):
                            return base64.b64decode(user[f"{field}-data"])
                        return Path(_resolve(base, user[field])).read_bytes()

                    _load_client_cert(verify, read("client-certificate"), read("client-key"))
        self._token = user.get("token")
        if user.get("tokenFile"):
            self._token_file = Path(_resolve(base, user["tokenFile"]))
        return server, verify

    def _headers(self) -> dict[str, str]:
        token = self._token_file.read_text().strip() if self._token_file else self._token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def patch_pod(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        try:
            response = self._http.patch(
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                json=body,
                headers={**self._headers(), "Content-Type": "application/merge-patch+json"},
            )
        except httpx.HTTPError as e:
            raise KubeError(f"PATCH pod {namespace}/{name} at {self._http.base_url}: {e}") from e
        if not response.is_success:
            try:
                reason = response.json().get("message", response.text)
            except ValueError:
                reason = response.text
            raise KubeError(f"PATCH pod {namespace}/{name}: HTTP {response.status_code}: {reason}")

    def close(self) -> None:
        self._http.close()
