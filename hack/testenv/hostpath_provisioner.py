"""The real node's storage (hack/testenv/realnode.py): a default StorageClass `hostpath` and a
provisioner that gives each of its claims a fresh folder of the node's state dir as a hostPath
PersistentVolume, and removes folder and volume when the claim is deleted. The node is this
machine and a single one, so every access mode holds; `helm install` of the chart and `kubectl
apply -f deploy/tiny-demo.yaml` bind as on a cluster with a storage class, no PVs made by hand.

    python -m hack.testenv.hostpath_provisioner --kubeconfig admin.kubeconfig --root STATE/volumes
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger("hostpath-provisioner")

CLASS_NAME = "hostpath"
PROVISIONER = "heurimentor.io/hostpath"
STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1",
    "kind": "StorageClass",
    "metadata": {"name": CLASS_NAME, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": PROVISIONER,
    "reclaimPolicy": "Delete",
    "volumeBindingMode": "Immediate",
}


def volume_for(claim: dict, root: Path) -> dict:
    """The PersistentVolume of a pending claim of the class: pre-bound to it (by uid), its own folder."""
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pvc-{meta['uid']}", "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec["accessModes"],
            "storageClassName": CLASS_NAME,
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(root / f"{meta['namespace']}-{meta['name']}-{meta['uid'][:8]}"), "type": "DirectoryOrCreate"},
        },
    }


class Provisioner:
    def __init__(self, kubeconfig: str, root: Path) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=kubeconfig)
        self.core, self.storage, self.root = client.CoreV1Api(api), client.StorageV1Api(api), root

    def ensure_class(self) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.storage.create_storage_class(STORAGE_CLASS)
        except ApiException as e:
            if e.status != 409:
                raise

    def reconcile(self) -> None:
        """One pass: a volume for each pending claim of the class, none left for a deleted claim."""
        from kubernetes.client.rest import ApiException

        api = self.core.api_client
        volumes = {v["metadata"]["name"]: v for v in api.sanitize_for_serialization(self.core.list_persistent_volume().items)}
        for claim in api.sanitize_for_serialization(self.core.list_persistent_volume_claim_for_all_namespaces().items):
            pending = claim.get("status", {}).get("phase") == "Pending" and not claim["spec"].get("volumeName")
            if pending and claim["spec"].get("storageClassName") == CLASS_NAME and f"pvc-{claim['metadata']['uid']}" not in volumes:
                volume = volume_for(claim, self.root)
                folder = Path(volume["spec"]["hostPath"]["path"])
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o777)  # images run as their own non-root users; fsGroup does not reach hostPath
                self.core.create_persistent_volume(volume)
                log.info("provisioned %s for %s/%s", volume["metadata"]["name"], claim["metadata"]["namespace"], claim["metadata"]["name"])
        for name, volume in volumes.items():
            ours = (volume["metadata"].get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
            if ours and volume.get("status", {}).get("phase") in ("Released", "Failed"):
                shutil.rmtree(volume["spec"]["hostPath"]["path"], ignore_errors=True)
                try:
                    self.core.delete_persistent_volume(name)
                except ApiException as e:
                    if e.status != 404:
                        raise
                log.info("deleted %s (its claim is gone)", name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hack.testenv.hostpath_provisioner", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", required=True, type=Path, help="the folder that holds the volumes' folders")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    provisioner = Provisioner(args.kubeconfig, args.root)
    provisioner.ensure_class()
    log.info("provisioning class %s under %s", CLASS_NAME, args.root)
    while True:
        try:
            provisioner.reconcile()
        except Exception:  # noqa: BLE001 - an apiserver hiccup: the next pass retries
            log.exception("pass failed")
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
