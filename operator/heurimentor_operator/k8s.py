"""Every Kubernetes API call of the operator: creates safe to repeat, deletes guarded by UID,
status writes guarded by resourceVersion."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from heurimentor_operator.constants import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)


class Conflict(Exception):
    """The job changed between our read and our write; reconcile again from a fresh read."""


class InvalidPodTemplate(Exception):
    """The apiserver refused a worker pod as malformed or invalid (400/422): the same template can
    never be created, so the job waits for a spec change instead of retrying."""


def client_configuration(kubeconfig: Path | None) -> client.Configuration:
    """Credentials from ``kubeconfig``, else the in-cluster ServiceAccount, else ~/.kube/config."""
    cfg = client.Configuration()
    try:
        if kubeconfig is not None:
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        else:
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException:
                config.load_kube_config(client_configuration=cfg)
    except config.ConfigException as e:
        raise RuntimeError(f"no Kubernetes credentials (kubeconfig {kubeconfig or '~/.kube/config'}, not in a cluster): {e}") from e
    return cfg


def make_api_client(kubeconfig: Path | None, *, pool_size: int = 16) -> client.ApiClient:
    cfg = client_configuration(kubeconfig)
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


class Kube:
    """Blocking calls; the handlers run them in a thread pool."""

    def __init__(self, api: client.ApiClient, *, request_timeout_s: float = 30.0):
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.api = api
        self.timeout = request_timeout_s

    # -- the job -------------------------------------------------------------------------------
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _request_timeout=self.timeout)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def patch_job_status(self, namespace: str, name: str, resource_version: str | None, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch .status, failing with Conflict if the job moved past ``resource_version``
        (None: no precondition, for a write that follows our own just made); returns the job as written."""
        guard = {"metadata": {"resourceVersion": resource_version}} if resource_version else {}
        return self._patch_job(
            self.custom.patch_namespaced_custom_object_status,
            namespace,
            name,
            {**guard, "status": status},
            conflict=f"changed since resourceVersion {resource_version}",
        )

    def patch_job_annotations(self, namespace: str, name: str, uid: str, annotations: dict[str, str | None]) -> None:
        """Merge-patch metadata.annotations (None removes a key) of that exact job (UID precondition)."""
        self._patch_job(
            self.custom.patch_namespaced_custom_object,
            namespace,
            name,
            {"metadata": {"uid": uid, "annotations": annotations}},
            conflict=f"was replaced (uid {uid})",
        )

    def _patch_job(self, patch: Any, namespace: str, name: str, body: dict[str, Any], *, conflict: str) -> dict[str, Any]:
        try:
            response = patch(GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=self.timeout, _preload_content=False)
            return json.loads(response.data)
        except ApiException as e:
            # A stale resourceVersion is a 409; a uid that is not the live object's, a 422 on metadata.uid.
            if e.status == 409 or (e.status == 422 and "metadata.uid" in _invalid_fields(e)):
                raise Conflict(f"Aquila2TrainingJob {namespace}/{name} {conflict}") from e
            raise

    def delete_job(self, namespace: str, name: str, uid: str) -> None:
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background")
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body=body, _request_timeout=self.timeout, _preload_content=False
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    # -- pods ----------------------------------------------------------------------------------
    def create_pod(self, manifest: dict[str, Any]) -> bool:
        """Create; True if created, False if a pod of that name already existed (adopted as is)."""
        meta = manifest["metadata"]
        try:
            self.core.create_namespaced_pod(meta["namespace"], manifest, _request_timeout=self.timeout, _preload_content=False)
            return True
        except ApiException as e:
            if e.status == 409:
                log.info("pod %s/%s already exists; adopting it", meta["namespace"], meta["name"])
                return False
            if e.status in (400, 422):
                raise InvalidPodTemplate(f"pod {meta['namespace']}/{meta['name']}: {_message(e)}") from e
            raise RuntimeError(f"cannot create pod {meta['namespace']}/{meta['name']}: {e.status} {e.reason}: {_message(e)}") from e

    def delete_pod(self, namespace: str, name: str, uid: str) -> bool:
        """Delete that exact pod (UID precondition): a newer pod of the same name is left alone."""
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body, _request_timeout=self.timeout, _preload_content=False)
            return True
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise

    # -- events --------------------------------------------------------------------------------
    def create_event(self, manifest: dict[str, Any]) -> bool:
        """Create an Event of a deterministic name; False if it was already posted (409)."""
        try:
            self.core.create_namespaced_event(
                manifest["metadata"]["namespace"], manifest, _request_timeout=self.timeout, _preload_content=False
            )
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    # -- config and service ---------------------------------------------------------------------
    def apply_config_map(self, manifest: dict[str, Any]) -> None:
        """Create, or bring an existing one's data up to date (guarded by its resourceVersion)."""
        meta = manifest["metadata"]
        try:
            self.core.create_namespaced_config_map(meta["namespace"], manifest, _request_timeout=self.timeout, _preload_content=False)
            return
        except ApiException as e:
            if e.status != 409:
                raise RuntimeError(f"cannot create configmap {meta['namespace']}/{meta['name']}: {e.status}: {_message(e)}") from e
        raw = self.core.read_namespaced_config_map(meta["name"], meta["namespace"], _request_timeout=self.timeout, _preload_content=False)
        current = json.loads(raw.data)
        if (current.get("data") or {}) != manifest["data"]:
            patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "data": manifest["data"]}
            try:
                self.core.patch_namespaced_config_map(
                    meta["name"], meta["namespace"], patch, _request_timeout=self.timeout, _preload_content=False
                )
            except ApiException as e:
                if e.status == 409:
                    raise Conflict(f"configmap {meta['namespace']}/{meta['name']} changed while being updated") from e
                raise

    def ensure_service(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        try:
            self.core.create_namespaced_service(meta["namespace"], manifest, _request_timeout=self.timeout, _preload_content=False)
        except ApiException as e:
            if e.status != 409:
                raise RuntimeError(f"cannot create service {meta['namespace']}/{meta['name']}: {e.status}: {_message(e)}") from e


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: keys gone from ``new`` are
    set to null at every depth, since a merge patch keeps what it does not name, nested keys too."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or value != before:
            patch[key] = value
    return patch


def _invalid_fields(e: ApiException) -> set[str]:
    try:
        return {c.get("field") for c in (json.loads(e.body or "{}").get("details") or {}).get("causes") or []}
    except (ValueError, AttributeError):
        return set()


def _message(e: ApiException) -> str:
    try:
        return json.loads(e.body or "{}").get("message", e.body)
    except ValueError:
        return str(e.body)
