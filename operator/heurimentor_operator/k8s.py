"""Every Kubernetes API call of the operator: creates safe to repeat, deletes guarded by UID,
status writes guarded by resourceVersion."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3
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


JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


def _path(*segments: str) -> str:
    return "/" + "/".join(quote(s, safe="") for s in segments)


def _pods(namespace: str, *name: str) -> str:
    return _path("api", "v1", "namespaces", namespace, "pods", *name)


def _jobs(namespace: str, name: str, *sub: str) -> str:
    return _path("apis", GROUP, VERSION, "namespaces", namespace, PLURAL, name, *sub)


class Kube:
    """Blocking calls; the handlers run them in a thread pool.

    Requests go out through the client's connection pool and credentials, but with bodies we
    serialise ourselves (``_send``): the generated client turns a dict body into its pydantic
    model and back before sending it (about 0.7 ms of CPU for a pod, an Event, a ConfigMap), on
    threads that share the interpreter with the operator's watch handling.
    """

    def __init__(self, api: client.ApiClient, *, request_timeout_s: float = 30.0):
        self.api = api
        self.timeout = request_timeout_s
        self._timeout = urllib3.Timeout(total=request_timeout_s)

    def _send(self, method: str, path: str, body: Any = None, *, content_type: str = JSON) -> bytes:
        """One request; the response body as bytes, or ApiException (status, reason, body) if not 2xx."""
        headers = {"Accept": JSON, "Content-Type": content_type}
        _, url, headers, _, _ = self.api.param_serialize(method, path, header_params=headers, auth_settings=["BearerToken"])
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            response = self.api.rest_client.pool_manager.request(method, url, body=payload, headers=headers, timeout=self._timeout)
        except urllib3.exceptions.SSLError as e:
            raise ApiException(status=0, reason=f"{type(e).__name__}: {e}") from e
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason, body=response.data.decode("utf-8", "replace"))
        return response.data

    # -- the job -------------------------------------------------------------------------------
    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._send("GET", _jobs(namespace, name)))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def patch_job_status(self, namespace: str, name: str, resource_version: str | None, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch .status, failing with Conflict if the job moved past ``resource_version``
        (None: no precondition, for a write that follows our own just made); returns the job as written."""
        guard = {"metadata": {"resourceVersion": resource_version}} if resource_version else {}
        return self._patch_job(
            _jobs(namespace, name, "status"),
            namespace,
            name,
            {**guard, "status": status},
            conflict=f"changed since resourceVersion {resource_version}",
        )

    def patch_job_annotations(self, namespace: str, name: str, uid: str, annotations: dict[str, str | None]) -> None:
        """Merge-patch metadata.annotations (None removes a key) of that exact job (UID precondition)."""
        self._patch_job(
            _jobs(namespace, name),
            namespace,
            name,
            {"metadata": {"uid": uid, "annotations": annotations}},
            conflict=f"was replaced (uid {uid})",
        )

    def _patch_job(self, path: str, namespace: str, name: str, body: dict[str, Any], *, conflict: str) -> dict[str, Any]:
        try:
            return json.loads(self._send("PATCH", path, body, content_type=MERGE_PATCH))
        except ApiException as e:
            # A stale resourceVersion is a 409; a uid that is not the live object's, a 422 on metadata.uid.
            if e.status == 409 or (e.status == 422 and "metadata.uid" in _invalid_fields(e)):
                raise Conflict(f"Aquila2TrainingJob {namespace}/{name} {conflict}") from e
            raise

    def delete_job(self, namespace: str, name: str, uid: str) -> None:
        body = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            self._send("DELETE", _jobs(namespace, name), body)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    # -- pods ----------------------------------------------------------------------------------
    def create_pod(self, manifest: dict[str, Any]) -> bool:
        """Create; True if created, False if a pod of that name already existed (adopted as is)."""
        meta = manifest["metadata"]
        try:
            self._send("POST", _pods(meta["namespace"]), manifest)
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
        try:
            self._send("DELETE", _pods(namespace, name), {"preconditions": {"uid": uid}})
            return True
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise

    # -- events --------------------------------------------------------------------------------
    def create_event(self, manifest: dict[str, Any]) -> bool:
        """Create an Event of a deterministic name; False if it was already posted (409)."""
        try:
            self._send("POST", _path("api", "v1", "namespaces", manifest["metadata"]["namespace"], "events"), manifest)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    # -- config and service ---------------------------------------------------------------------
    def apply_config_map(self, manifest: dict[str, Any]) -> None:
        """Create, or bring an existing one's data up to date (guarded by its resourceVersion)."""
        meta = manifest["metadata"]
        collection = _path("api", "v1", "namespaces", meta["namespace"], "configmaps")
        try:
            self._send("POST", collection, manifest)
            return
        except ApiException as e:
            if e.status != 409:
                raise RuntimeError(f"cannot create configmap {meta['namespace']}/{meta['name']}: {e.status}: {_message(e)}") from e
        current = json.loads(self._send("GET", f"{collection}/{quote(meta['name'], safe='')}"))
        if (current.get("data") or {}) != manifest["data"]:
            patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "data": manifest["data"]}
            try:
                self._send("PATCH", f"{collection}/{quote(meta['name'], safe='')}", patch, content_type=MERGE_PATCH)
            except ApiException as e:
                if e.status == 409:
                    raise Conflict(f"configmap {meta['namespace']}/{meta['name']} changed while being updated") from e
                raise

    def ensure_service(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        try:
            self._send("POST", _path("api", "v1", "namespaces", meta["namespace"], "services"), manifest)
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
