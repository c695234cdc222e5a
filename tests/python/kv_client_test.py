"""A KeyValue client in another language, generated from proto/ at test time.

Runs against a proxy at $PRISM_GRPC_ADDR (default 127.0.0.1:8980) serving the
embedded default namespaces, and exercises Put, Get, Delete, Scan and Mutate
on both demo namespaces plus the status codes for bad input.

Needs the Python packages grpcio and grpcio-tools (the latter bundles its own
protobuf compiler); run: python3 tests/python/kv_client_test.py
"""

import importlib
import os
import sys
import tempfile
import unittest
import uuid

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(ROOT, "proto")
ADDR = os.environ.get("PRISM_GRPC_ADDR", "127.0.0.1:8980")
NAMESPACES = ["demo-mem", "demo-sqlite"]


def generate_stubs():
    out = tempfile.mkdtemp(prefix="prism-py-")
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "prism/keyvalue/v1/keyvalue.proto",
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed with {rc}")
    for pkg in ["prism", "prism/keyvalue", "prism/keyvalue/v1"]:
        open(os.path.join(out, pkg, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    pb = importlib.import_module("prism.keyvalue.v1.keyvalue_pb2")
    rpc = importlib.import_module("prism.keyvalue.v1.keyvalue_pb2_grpc")
    return pb, rpc


pb, rpc = generate_stubs()


class KeyValueClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(ADDR)
        grpc.channel_ready_future(cls.channel).result(timeout=30)
        cls.kv = rpc.KeyValueServiceStub(cls.channel)

    def fresh_id(self):
        return f"py-{uuid.uuid4()}"

    def assert_status(self, code, call, *fragments):
        with self.assertRaises(grpc.RpcError) as ctx:
            call()
        self.assertEqual(ctx.exception.code(), code, ctx.exception.details())
        for fragment in fragments:
            self.assertIn(fragment, ctx.exception.details())
        return ctx.exception.details()

    def test_put_get_delete_on_both_namespaces(self):
        for ns in NAMESPACES:
            with self.subTest(namespace=ns):
                rid = self.fresh_id()
                put = self.kv.Put(pb.PutRequest(namespace=ns, id=rid, items=[
                    pb.PutItem(key=b"b", value=b"2"),
                    pb.PutItem(key=b"a", value=b"1"),
                    pb.PutItem(key=b"c", value=b"\x00\xff"),
                ]))
                self.assertEqual(len(put.versions), 3)
                self.assertLess(put.versions[0], put.versions[1])
                got = self.kv.Get(pb.GetRequest(namespace=ns, id=rid))
                self.assertEqual([i.key for i in got.items], [b"a", b"b", b"c"])
                self.assertEqual(got.items[2].value, b"\x00\xff")
                self.assertEqual(got.items[0].version, put.versions[1])
                self.assertFalse(got.items[0].HasField("expires_at"))
                sel = pb.KeySelection(keys=pb.KeyList(keys=[b"a", b"zz"]))
                got = self.kv.Get(pb.GetRequest(namespace=ns, id=rid, selection=sel))
                self.assertEqual([i.key for i in got.items], [b"a"])
                rng = pb.KeySelection(range=pb.KeyRange(start=b"b", end=b"c"))
                got = self.kv.Get(pb.GetRequest(namespace=ns, id=rid, selection=rng))
                self.assertEqual([i.key for i in got.items], [b"b"])
                deleted = self.kv.Delete(pb.DeleteRequest(
                    namespace=ns, id=rid, selection=pb.KeySelection(prefix=b"a")))
                self.assertEqual(deleted.deleted, 1)
                got = self.kv.Get(pb.GetRequest(namespace=ns, id=rid))
                self.assertEqual([i.key for i in got.items], [b"b", b"c"])

    def test_paging_and_ttl(self):
        for ns in NAMESPACES:
            with self.subTest(namespace=ns):
                rid = self.fresh_id()
                items = [pb.PutItem(key=f"k{i:02}".encode(), value=b"x" * 20) for i in range(10)]
                items.append(pb.PutItem(key=b"ttl", value=b"t", ttl={"seconds": 3600}))
                self.kv.Put(pb.PutRequest(namespace=ns, id=rid, items=items))
                keys, token, pages = [], "", 0
                while True:
                    page = self.kv.Get(pb.GetRequest(
                        namespace=ns, id=rid, page_size_bytes=50, page_token=token))
                    pages += 1
                    keys += [i.key for i in page.items]
                    token = page.next_page_token
                    if not token:
                        break
                self.assertGreater(pages, 3)
                self.assertEqual(len(keys), 11)
                ttl_item = [i for i in self.kv.Get(pb.GetRequest(namespace=ns, id=rid)).items
                            if i.key == b"ttl"][0]
                self.assertTrue(ttl_item.HasField("expires_at"))

    def test_scan(self):
        for ns in NAMESPACES:
            with self.subTest(namespace=ns):
                prefix = self.fresh_id()
                for n in range(3):
                    self.kv.Put(pb.PutRequest(namespace=ns, id=f"{prefix}-{n}",
                                              items=[pb.PutItem(key=b"k", value=b"v")]))
                seen, token = set(), ""
                while True:
                    page = self.kv.Scan(pb.ScanRequest(
                        namespace=ns, page_size_bytes=4096, page_token=token))
                    seen.update(r.id for r in page.records)
                    token = page.next_page_token
                    if not token:
                        break
                self.assertTrue({f"{prefix}-{n}" for n in range(3)} <= seen)

    def test_mutate_and_conditional_writes(self):
        for ns in NAMESPACES:
            with self.subTest(namespace=ns):
                a, b = self.fresh_id(), self.fresh_id()
                out = self.kv.Mutate(pb.MutateRequest(namespace=ns, mutations=[
                    pb.Mutation(id=a, put=pb.PutItem(key=b"k", value=b"1", expected_version=0)),
                    pb.Mutation(id=b, put=pb.PutItem(key=b"k", value=b"1")),
                ]))
                version_a = out.results[0].version
                self.assertGreater(version_a, 0)
                details = self.assert_status(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    lambda: self.kv.Mutate(pb.MutateRequest(namespace=ns, mutations=[
                        pb.Mutation(id=b, delete=pb.KeySelection(all=pb.AllKeys())),
                        pb.Mutation(id=a, put=pb.PutItem(
                            key=b"k", value=b"2", expected_version=version_a + 1000)),
                    ])),
                    f"version {version_a}")
                self.assertIn("nothing was written", details)
                still = self.kv.Get(pb.GetRequest(namespace=ns, id=b))
                self.assertEqual(len(still.items), 1, "the failed Mutate deleted nothing")

    def test_idempotent_put(self):
        for ns in NAMESPACES:
            with self.subTest(namespace=ns):
                rid, token = self.fresh_id(), str(uuid.uuid4())
                req = pb.PutRequest(namespace=ns, id=rid, idempotency_token=token,
                                    items=[pb.PutItem(key=b"k", value=b"v")])
                first, second = self.kv.Put(req), self.kv.Put(req)
                self.assertEqual(list(first.versions), list(second.versions))
                self.assertTrue(second.replayed)

    def test_bad_input_statuses(self):
        ns = "demo-mem"
        self.assert_status(grpc.StatusCode.INVALID_ARGUMENT,
                           lambda: self.kv.Put(pb.PutRequest(namespace="", id="x")), "namespace")
        self.assert_status(grpc.StatusCode.INVALID_ARGUMENT,
                           lambda: self.kv.Get(pb.GetRequest(namespace=ns, id="")), "id")
        self.assert_status(grpc.StatusCode.NOT_FOUND,
                           lambda: self.kv.Get(pb.GetRequest(namespace="nope", id="x")),
                           "demo-mem", "demo-sqlite")
        self.assert_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.kv.Put(pb.PutRequest(namespace=ns, id="x", items=[
                pb.PutItem(key=b"k", value=b"x" * (1024 * 1024 + 1))])),
            "max_value_bytes", "1048576")
        self.assert_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.kv.Put(pb.PutRequest(namespace=ns, id="x", items=[
                pb.PutItem(key=b"k" * 1025, value=b"")])),
            "max_key_bytes")
        self.assert_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.kv.Put(pb.PutRequest(namespace=ns, id="x", items=[
                pb.PutItem(key=b"k", value=b"") for _ in range(1001)])),
            "max_items_per_call")
        self.assert_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: self.kv.Get(pb.GetRequest(namespace=ns, id="x", page_token="not-a-token")),
            "page_token")


if __name__ == "__main__":
    unittest.main(verbosity=2)
