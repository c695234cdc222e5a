"""Server reflection as the older `grpc.reflection.v1alpha` clients speak it.

Runs against a proxy at $PRISM_GRPC_ADDR (default 127.0.0.1:8980) with the
stubs that ship with grpcio-reflection (no local .proto files): lists the
services, then fetches the file that defines the KeyValue service and every
file it imports, and builds a descriptor pool from them alone.

Needs the Python packages grpcio and grpcio-reflection; run:
python3 tests/python/reflection_v1alpha_test.py
"""

import os
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

ADDR = os.environ.get("PRISM_GRPC_ADDR", "127.0.0.1:8980")
SERVICE = "prism.keyvalue.v1.KeyValueService"


class ReflectionV1alphaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(ADDR)
        grpc.channel_ready_future(cls.channel).result(timeout=30)
        cls.stub = reflection_pb2_grpc.ServerReflectionStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()

    def ask(self, **request):
        """One request on the reflection stream; returns its one answer."""
        answers = list(self.stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=30))
        self.assertEqual(len(answers), 1)
        answer = answers[0]
        self.assertNotEqual(answer.WhichOneof("message_response"), "error_response",
                            answer.error_response.error_message)
        return answer

    def files(self, **request):
        """The FileDescriptorProtos of a file request, parsed."""
        answer = self.ask(**request)
        raw = answer.file_descriptor_response.file_descriptor_proto
        self.assertTrue(raw, f"no file for {request}")
        return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in raw]

    def test_lists_the_services(self):
        answer = self.ask(list_services="")
        names = {s.name for s in answer.list_services_response.service}
        for name in [SERVICE, "prism.timeseries.v1.TimeSeriesService",
                     "grpc.health.v1.Health",
                     "grpc.reflection.v1alpha.ServerReflection",
                     "grpc.reflection.v1.ServerReflection"]:
            self.assertIn(name, names)

    def test_the_service_descriptor_and_its_imports_build_a_pool(self):
        files = {f.name: f for f in self.files(file_containing_symbol=SERVICE)}
        defining = next(iter(files.values()))
        self.assertEqual(defining.package, "prism.keyvalue.v1")
        self.assertIn("KeyValueService", [s.name for s in defining.service])
        # Every import, fetched by name, until the set is closed.
        wanted = list(defining.dependency)
        while wanted:
            name = wanted.pop()
            if name in files:
                continue
            for f in self.files(file_by_filename=name):
                files[f.name] = f
                wanted.extend(f.dependency)
        pool = descriptor_pool.DescriptorPool()
        added = set()

        def add(name):
            if name in added:
                return
            for dep in files[name].dependency:
                add(dep)
            pool.Add(files[name])
            added.add(name)

        for name in files:
            add(name)
        service = pool.FindServiceByName(SERVICE)
        methods = {m.name for m in service.methods}
        self.assertTrue({"Put", "Get", "Delete", "Scan", "Mutate"} <= methods, methods)
        put = service.FindMethodByName("Put")
        self.assertEqual(put.input_type.full_name, "prism.keyvalue.v1.PutRequest")

    def test_an_unknown_symbol_is_not_found(self):
        # Answered either in the stream (error_response) or as the call's
        # status; both say NOT_FOUND.
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="prism.nope.v1.Nothing")
        try:
            answer = list(self.stub.ServerReflectionInfo(iter([request]), timeout=30))[0]
            code = answer.error_response.error_code
        except grpc.RpcError as e:
            code = e.code().value[0]
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND.value[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
