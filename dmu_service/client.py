"""Client of the mixture REST contract in ``dmu_service.schemas.mixtures`` (used by trainer and TSM)."""

from __future__ import annotations

import httpx

from dmu_service.schemas.mixtures import MixtureVersionPublic


class MixtureRequestError(RuntimeError):
    """The DMU refused a request (4xx) or failed (5xx); the message carries its reason."""


def _raise_for_status(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise MixtureRequestError(f"{what}: HTTP {response.status_code}: {detail}")


class MixtureConflict(RuntimeError):
    """The mixture changed since the version named in If-Match (HTTP 412)."""


class MixtureClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MixtureClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def current(self, name: str, *, known_version: int | None = None, wait: float = 0.0) -> MixtureVersionPublic | None:
        """The current version, or None when it is still ``known_version`` (after waiting up to ``wait`` s)."""
        headers = {"If-None-Match": f'"{known_version}"'} if known_version is not None else {}
        params = {"wait": wait} if wait else {}
        response = self._http.get(f"/mixtures/{name}/current", headers=headers, params=params, timeout=wait + 10.0)
        if response.status_code == 304:
            return None
        response.raise_for_status()
        return MixtureVersionPublic.model_validate(response.json())

    def update(self, name: str, weights: dict[str, float], *, reason: str, author: str, if_match: int | None = None) -> MixtureVersionPublic:
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else {}
        response = self._http.put(f"/mixtures/{name}", json={"weights": weights, "reason": reason, "author": author}, headers=headers)
        if response.status_code == 412:
            raise MixtureConflict(f"mixture {name}: changed since version {if_match}: {response.text}")
        response.raise_for_status()
        return MixtureVersionPublic.model_validate(response.json())

    def create(self, name: str, weights: dict[str, float], *, reason: str, author: str) -> MixtureVersionPublic:
        response = self._http.post("/mixtures", json={"name": name, "weights": weights, "reason": reason, "author": author})
        _raise_for_status(response, f"create mixture {name}")
        return MixtureVersionPublic.model_validate(response.json())

    def get(self, name: str) -> MixtureVersionPublic | None:
        """The current version, or None when the mixture does not exist."""
        response = self._http.get(f"/mixtures/{name}")
        if response.status_code == 404:
            return None
        _raise_for_status(response, f"read mixture {name}")
        return MixtureVersionPublic.model_validate(response.json())

    def versions(self, name: str) -> list[MixtureVersionPublic]:
        response = self._http.get(f"/mixtures/{name}/versions")
        _raise_for_status(response, f"list versions of mixture {name}")
        return [MixtureVersionPublic.model_validate(v) for v in response.json()]
