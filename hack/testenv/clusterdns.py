"""The real node's cluster DNS (hack/testenv/realnode.py): the A records pods look up, read live
from the apiserver, with nothing forwarded anywhere (no CoreDNS image exists offline).

    <hostname>.<subdomain>.<namespace>.svc[.cluster.local]  the pod with that hostname/subdomain
    <service>.<namespace>.svc[.cluster.local]              the Service's ClusterIP (a headless
                                                            one: the IPs of its ready endpoints)

Everything else is NXDOMAIN at once, so a pod's search-list lookups never wait. UDP only (the
answers are a few records). Every query asks the apiserver afresh: a pod's address is seen the
moment the kubelet reports it, which is what a rendezvous needs.

    python -m hack.testenv.clusterdns --kubeconfig admin.kubeconfig --listen 10.244.0.1:53
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import struct

log = logging.getLogger("clusterdns")

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_NXDOMAIN = 3


def parse_question(packet: bytes) -> tuple[int, int, list[str], int, bytes]:
    """(id, flags, labels, qtype, question bytes) of a one-question query."""
    query_id, flags, qdcount = struct.unpack("!3H", packet[:6])
    if qdcount != 1:
        raise ValueError(f"{qdcount} questions")
    labels, offset = [], 12
    while length := packet[offset]:
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    qtype, _qclass = struct.unpack("!2H", packet[offset + 1 : offset + 5])
    return query_id, flags, labels, qtype, packet[12 : offset + 5]


def build_answer(query_id: int, flags: int, question: bytes, addresses: list[str] | None, ttl: int = 1) -> bytes:
    """A response: the A records, NOERROR with none (an AAAA for a known name), or NXDOMAIN (None)."""
    rcode = RCODE_NXDOMAIN if addresses is None else 0
    answers = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, ttl, 4) + ipaddress.IPv4Address(a).packed for a in addresses or ())
    header = struct.pack("!6H", query_id, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1, len(addresses or ()), 0, 0)
    return header + question + answers


class ClusterRecords:
    """Names to addresses from the apiserver (CoreV1Api and DiscoveryV1Api of the kubernetes client)."""

    def __init__(self, kubeconfig: str, cluster_domain: str) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api)
        self.suffix = cluster_domain.split(".")

    def lookup(self, labels: list[str]) -> list[str] | None:
        if labels[-len(self.suffix) :] == self.suffix:
            labels = labels[: -len(self.suffix)]
        if len(labels) == 3 and labels[2] == "svc":
            return self._service(labels[0], labels[1])
        if len(labels) == 4 and labels[3] == "svc":
            return self._pod(labels[0], labels[1], labels[2])
        return None

    def _service(self, name: str, namespace: str) -> list[str] | None:
        from kubernetes.client.rest import ApiException

        try:
            service = self.core.read_namespaced_service(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        if service.spec.cluster_ip and service.spec.cluster_ip != "None":
            return [service.spec.cluster_ip]
        endpoints = self.core.read_namespaced_endpoints(name, namespace)
        return [a.ip for subset in endpoints.subsets or () for a in subset.addresses or ()]

    def _pod(self, hostname: str, subdomain: str, namespace: str) -> list[str] | None:
        pods = self.core.list_namespaced_pod(namespace).items
        ips = [
            p.status.pod_ip
            for p in pods
            if p.spec.hostname == hostname and p.spec.subdomain == subdomain and p.status.pod_ip and not p.metadata.deletion_timestamp
        ]
        return ips or None


def serve(records: ClusterRecords, host: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    log.info("serving cluster DNS on %s:%d", host, port)
    while True:
        packet, client = sock.recvfrom(4096)
        try:
            query_id, flags, labels, qtype, question = parse_question(packet)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error):
            continue  # not a query we can answer: a resolver retries or gives up
        try:
            addresses = records.lookup(labels)
        except Exception:  # noqa: BLE001 - an apiserver hiccup: no answer, the resolver retries
            log.exception("lookup of %s failed", ".".join(labels))
            continue
        if addresses is not None and qtype != TYPE_A:
            addresses = []
        log.info("%s type %d -> %s", ".".join(labels), qtype, addresses)
        sock.sendto(build_answer(query_id, flags, question, addresses), client)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hack.testenv.clusterdns", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--listen", required=True, help="HOST:PORT (UDP)")
    parser.add_argument("--cluster-domain", default="cluster.local")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    serve(ClusterRecords(args.kubeconfig, args.cluster_domain), host, int(port))


if __name__ == "__main__":
    main()
