"""A stand-in for TF Serving (its binary cannot run on these machines).

It serves real SavedModels from a TF Serving model folder
(`base/<model>/<version>/`) over REST and gRPC, and holds every request to
the formats TF Serving documents:

- REST (https://www.tensorflow.org/tfx/serving/api_rest):
  `GET /v1/models/<name>[/versions/<v>|/labels/<l>]` (status),
  `GET .../metadata`, `POST ...:predict` with a JSON object holding exactly
  one of "instances" (row format) or "inputs" (columnar format) and an
  optional "signature_name"; errors are `{"error": "..."}` with 400/404.
- gRPC: tensorflow_serving.apis PredictionService.Predict and
  GetModelMetadata (metadata_field "signature_def"), ModelService.GetModelStatus;
  errors are status codes (INVALID_ARGUMENT, NOT_FOUND, ...).

`requests` records what came in; `fail_next` answers the next n requests
with 503 / UNAVAILABLE; `delay` sleeps before answering.
"""

import json
import os
import re
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>:predict|/metadata)?$"
)


class RequestError(Exception):
    def __init__(self, message, http=400, grpc_code=grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message)
        self.http, self.grpc_code = http, grpc_code


class TFServingDouble:
    def __init__(self, base_path: str, labels: dict | None = None):
        self.base_path = base_path
        self.labels = labels or {}  # {(model, label): version}
        self.requests = []
        self.fail_next = 0
        self.delay = 0.0
        self._loaded = {}
        self._lock = threading.Lock()

    # Model store: what TF Serving's file-system source would load.

    def versions(self, name):
        folder = os.path.join(self.base_path, name)
        if not os.path.isdir(folder):
            raise RequestError(
                f"Servable not found for request: Latest({name})", 404, grpc.StatusCode.NOT_FOUND
            )
        return sorted(int(v) for v in os.listdir(folder) if v.isdigit())

    def resolve(self, name, version=None, label=None):
        versions = self.versions(name)
        if label is not None:
            if (name, label) not in self.labels:
                raise RequestError(
                    f"Unrecognized servable version label: {label}",
                    404,
                    grpc.StatusCode.NOT_FOUND,
                )
            version = self.labels[(name, label)]
        if version is None:
            version = versions[-1]
        if version not in versions:
            raise RequestError(
                f"Servable not found for request: Specific({name}, {version})",
                404,
                grpc.StatusCode.NOT_FOUND,
            )
        with self._lock:
            key = (name, version)
            if key not in self._loaded:
                path = os.path.join(self.base_path, name, str(version))
                self._loaded[key] = tf.saved_model.load(path)
        return version, self._loaded[key]

    def signature_map(self, name, version):
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(self.base_path, name, str(version), "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in proto.meta_graphs[0].signature_def.items():
            if not key.startswith("__"):
                signature_map.signature_def[key].CopyFrom(signature)
        return signature_map

    def run(self, name, version, label, signature, inputs: dict):
        version, model = self.resolve(name, version, label)
        if signature not in model.signatures:
            raise RequestError(f'Serving signature name: "{signature}" not found in signature def')
        function = model.signatures[signature]
        specs = function.structured_input_signature[1]
        missing = sorted(set(specs) - set(inputs))
        extra = sorted(set(inputs) - set(specs))
        if missing or extra:
            raise RequestError(
                f"Input to signature {signature} is missing {missing} / has unknown {extra}; "
                f"expected inputs {sorted(specs)}"
            )
        feed = {}
        for key, spec in sorted(specs.items()):
            value = inputs[key]
            if isinstance(value, tf.Tensor):
                if value.dtype != spec.dtype:
                    raise RequestError(
                        f"Expects arg[{sorted(specs).index(key)}] to be {spec.dtype.name} but "
                        f"{value.dtype.name} is provided"
                    )
            else:
                try:
                    value = tf.constant(value, dtype=spec.dtype)
                except (TypeError, ValueError) as error:
                    raise RequestError(f"Failed to process input {key!r}: {error}") from None
            if not spec.shape.is_compatible_with(value.shape):
                raise RequestError(
                    f"Input {key!r} has shape {value.shape.as_list()}, the signature "
                    f"expects {spec.shape.as_list()}"
                )
            feed[key] = value
        return version, function(**feed)

    # Request bookkeeping shared by both protocols.

    def _admit(self, record):
        self.requests.append(record)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RequestError("Server is overloaded", 503, grpc.StatusCode.UNAVAILABLE)

    # REST.

    def start_rest(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left, as the timeout test wants

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {"protocol": "rest", "method": method, "path": self.path, "raw": raw}
                try:
                    double._admit(record)
                    self._reply(200, double.rest(method, self.path, raw, self.headers))
                except RequestError as error:
                    self._reply(error.http, {"error": str(error)})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def rest(self, method, path, raw, headers):
        match = PATH.match(path)
        if not match:
            raise RequestError(f"Malformed request: {method} {path}", 404)
        name, verb = match["name"], match["verb"]
        version = int(match["version"]) if match["version"] else None
        if verb == ":predict":
            if method != "POST":
                raise RequestError(f"Malformed request: {method} {path}", 404)
            if "json" not in headers.get("Content-Type", ""):
                raise RequestError("Content-Type must be application/json")
            try:
                body = json.loads(raw)
            except ValueError as error:
                raise RequestError(f"JSON Parse error: {error}") from None
            if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
                raise RequestError(
                    "Missing 'inputs' or 'instances' key (exactly one of them is required)"
                )
            if set(body) - {"signature_name", "instances", "inputs"}:
                raise RequestError(f"Unknown keys {sorted(set(body))} in request")
            signature = body.get("signature_name", "serving_default")
            if "inputs" in body:
                inputs = body["inputs"]
                if not isinstance(inputs, dict):
                    raise RequestError("Columnar 'inputs' of a multi-input signature is an object")
            else:
                rows = body["instances"]
                inputs = {key: [row[key] for row in rows] for key in rows[0]}
            _, outputs = self.run(name, version, match["label"], signature, inputs)
            values = {key: _to_json(value) for key, value in outputs.items()}
            if "inputs" in body:
                # One output comes back without its name, as TF Serving does.
                return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
            rows = zip(*values.values(), strict=True)
            return {"predictions": [dict(zip(values, row, strict=True)) for row in rows]}
        if method != "GET":
            raise RequestError(f"Malformed request: {method} {path}", 404)
        version, _ = self.resolve(name, version, match["label"])
        if verb == "/metadata":
            signature_map = json_format.MessageToDict(
                self.signature_map(name, version), preserving_proto_field_name=True
            )
            return {
                "model_spec": {"name": name, "signature_name": "", "version": str(version)},
                "metadata": {"signature_def": signature_map},
            }
        versions = [version] if match["version"] or match["label"] else self.versions(name)
        return {
            "model_version_status": [
                {
                    "version": str(v),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for v in versions
            ]
        }

    # gRPC.

    def start_grpc(self):
        double = self

        def spec_of(request):
            spec = request.model_spec
            if not spec.name:
                raise RequestError(
                    "Missing ModelSpec name", grpc_code=grpc.StatusCode.INVALID_ARGUMENT
                )
            version = spec.version.value if spec.HasField("version") else None
            label = spec.version_label or None
            return spec.name, version, label

        def guarded(handler):
            def call(self, request, context):
                try:
                    double._admit({"protocol": "grpc", "request": request})
                    return handler(request)
                except RequestError as error:
                    context.abort(error.grpc_code, str(error))

            return call

        def predict(request):
            name, version, label = spec_of(request)
            inputs = {
                key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()
            }
            signature = request.model_spec.signature_name or "serving_default"
            version, outputs = double.run(name, version, label, signature, inputs)
            reply = predict_pb2.PredictResponse()
            reply.model_spec.name, reply.model_spec.signature_name = name, signature
            reply.model_spec.version.value = version
            for key, value in outputs.items():
                reply.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return reply

        def metadata(request):
            name, version, label = spec_of(request)
            if list(request.metadata_field) != ["signature_def"]:
                raise RequestError("Metadata field must be exactly ['signature_def']")
            version, _ = double.resolve(name, version, label)
            reply = get_model_metadata_pb2.GetModelMetadataResponse()
            reply.model_spec.name = name
            reply.model_spec.version.value = version
            reply.metadata["signature_def"].Pack(double.signature_map(name, version))
            return reply

        def status(request):
            name, version, label = spec_of(request)
            versions = double.versions(name)
            if version is not None or label is not None:
                versions = [double.resolve(name, version, label)[0]]
            reply = get_model_status_pb2.GetModelStatusResponse()
            for v in versions:
                entry = reply.model_version_status.add()
                entry.version = v
                entry.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return reply

        class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
            Predict = guarded(predict)
            GetModelMetadata = guarded(metadata)

        class Models(model_service_pb2_grpc.ModelServiceServicer):
            GetModelStatus = guarded(status)

        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            Prediction(), self.grpc
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), self.grpc)
        port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()
        return f"127.0.0.1:{port}"

    def stop(self):
        if hasattr(self, "http"):
            self.http.shutdown()
            self.http.server_close()
        if hasattr(self, "grpc"):
            self.grpc.stop(0)


def _to_json(tensor):
    value = tensor.numpy()
    if value.dtype == object:
        return np.char.decode(value.astype(bytes), "utf-8").tolist()
    return value.tolist()
