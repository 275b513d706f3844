"""A client for TF Serving's REST and gRPC APIs, with timeouts, retries and
errors that say what went wrong.

client = Client("sentiment", rest_url="http://localhost:8501")
client.predict({"text": ["a gem of a film"]})["label_name"]   # array(['positive'])
client = Client("sentiment", grpc_address="localhost:8500")   # same methods over gRPC
"""

import json
import time
import urllib.error
import urllib.request

import numpy as np

# Failures worth another attempt: the server is starting, overloaded or
# briefly unreachable. Bad requests and unknown models fail at once.
RETRY_HTTP_CODES = (429, 502, 503, 504)
RETRY_GRPC_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED")


class ServingError(RuntimeError):
    """A request TF Serving refused or could not answer.

    Attributes:
        code: the HTTP status (REST) or gRPC status name, or None when the
            server could not be reached.
    """

    def __init__(self, message: str, code=None):
        super().__init__(message)
        self.code = code


class Client:
    """Talks to one model on a TF Serving server.

    Args:
        model: the model name in TF Serving (`--model_name` or models.config).
        rest_url: e.g. "http://localhost:8501" (TF Serving's REST port).
        grpc_address: e.g. "localhost:8500" (its gRPC port). Give one of the two.
        version: int or None (the latest available version).
        version_label: a label of models.config ("stable"), instead of `version`.
        timeout: seconds per attempt, default 10.
        retries: further attempts after a retryable failure (server
            unreachable or overloaded, HTTP 429/502/503/504, gRPC UNAVAILABLE,
            RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED), default 2.
        backoff: seconds before the first retry, doubled each time; default 0.5.
    """

    def __init__(
        self,
        model: str,
        rest_url: str | None = None,
        grpc_address: str | None = None,
        version: int | None = None,
        version_label: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
    ):
        if (rest_url is None) == (grpc_address is None):
            raise ValueError(
                "Give exactly one of rest_url (e.g. 'http://localhost:8501') or "
                "grpc_address (e.g. 'localhost:8500')."
            )
        if version is not None and version_label is not None:
            raise ValueError("Give `version` or `version_label`, not both.")
        if rest_url is not None and not rest_url.startswith(("http://", "https://")):
            raise ValueError(
                f"rest_url must start with http:// or https://; received {rest_url!r}."
            )
        self.model = model
        self.rest_url = rest_url.rstrip("/") if rest_url else None
        self.grpc_address = grpc_address
        self.version = version
        self.version_label = version_label
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._stubs = None
        self._signatures = None

    def __repr__(self):
        where = self.rest_url or f"grpc://{self.grpc_address}"
        return f"Client(model={self.model!r}, {where})"

    # Public API: the same on both protocols.

    def predict(self, inputs: dict, signature: str = "serving_default") -> dict:
        """Runs `signature` on a batch; returns {output name: numpy array}.

        Args:
            inputs: {input name: batch}, e.g. {"text": ["a gem", "dull"]} or
                {"token_ids": (B, L) ints, ...}; lists or numpy arrays.
        """
        inputs = _as_arrays(inputs)
        if self.rest_url:
            body = {
                "signature_name": signature,
                "inputs": {k: v.tolist() for k, v in inputs.items()},
            }
            reply = self._rest("POST", ":predict", body)
            outputs = reply["outputs"]
            if not isinstance(outputs, dict):  # a single output comes back bare
                if self._signatures is None:
                    self._signatures = self._metadata()
                names = list(self._signatures.get(signature, {}).get("outputs", {"output": 0}))
                outputs = {names[0]: outputs}
            return {name: np.asarray(value) for name, value in outputs.items()}
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, signature)
        declared = self._input_dtypes(signature)
        for name, value in inputs.items():
            dtype = tf.string if value.dtype.kind in "USO" else None
            if value.dtype.kind in "iu" and declared.get(name, "").startswith("DT_INT"):
                # gRPC tensors must carry the signature's dtype exactly (REST's
                # JSON numbers are converted by the server): cast Python ints.
                dtype = tf.as_dtype(declared[name][3:].lower())
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
        reply = self._grpc("prediction", "Predict", request)
        outputs = {name: tf.make_ndarray(proto) for name, proto in reply.outputs.items()}
        return {
            name: np.char.decode(value.astype(bytes), "utf-8") if value.dtype == object else value
            for name, value in outputs.items()
        }

    def status(self) -> list[dict]:
        """The model's versions: [{"version": 1, "state": "AVAILABLE",
        "error_code": "OK", "error_message": ""}, ...]."""
        if self.rest_url:
            reply = self._rest("GET", "", None)
            return [
                {
                    "version": int(entry["version"]),
                    "state": entry["state"],
                    "error_code": entry.get("status", {}).get("error_code", "OK"),
                    "error_message": entry.get("status", {}).get("error_message", ""),
                }
                for entry in reply["model_version_status"]
            ]
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, None)
        reply = self._grpc("model", "GetModelStatus", request)
        states = get_model_status_pb2.ModelVersionStatus.State
        return [
            {
                "version": entry.version,
                "state": states.Name(entry.state),
                "error_code": _grpc_error_name(entry.status.error_code),
                "error_message": entry.status.error_message,
            }
            for entry in reply.model_version_status
        ]

    def metadata(self) -> dict:
        """Signatures: {name: {"inputs": {input: {"dtype": "DT_STRING",
        "shape": [-1]}}, "outputs": {...}}}."""
        self._signatures = self._metadata()
        return self._signatures

    def _metadata(self) -> dict:
        if self.rest_url:
            reply = self._rest("GET", "/metadata", None)
            signatures = reply["metadata"]["signature_def"]["signature_def"]
            return {
                name: {
                    side: {
                        tensor: {
                            "dtype": spec["dtype"],
                            "shape": [int(d["size"]) for d in spec["tensor_shape"].get("dim", [])],
                        }
                        for tensor, spec in signature.get(side, {}).items()
                    }
                    for side in ("inputs", "outputs")
                }
                for name, signature in signatures.items()
            }
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec, None)
        request.metadata_field.append("signature_def")
        reply = self._grpc("prediction", "GetModelMetadata", request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        reply.metadata["signature_def"].Unpack(signature_map)
        return {
            name: {
                side: {
                    tensor: {
                        "dtype": types_pb2.DataType.Name(spec.dtype),
                        "shape": [d.size for d in spec.tensor_shape.dim],
                    }
                    for tensor, spec in getattr(signature, side).items()
                }
                for side in ("inputs", "outputs")
            }
            for name, signature in signature_map.signature_def.items()
        }

    def _input_dtypes(self, signature: str) -> dict:
        if self._signatures is None:
            self._signatures = self.metadata()
        return {
            name: spec["dtype"]
            for name, spec in self._signatures.get(signature, {}).get("inputs", {}).items()
        }

    def wait_until_available(self, timeout: float = 60.0) -> int:
        """Polls `status()` until a version is AVAILABLE; returns it."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                for entry in self.status():
                    if entry["state"] == "AVAILABLE":
                        return entry["version"]
                    last = f"{entry['state']} {entry['error_message']}".strip()
            except ServingError as error:
                last = str(error)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        raise ServingError(f"{self.model} was not AVAILABLE within {timeout:.0f} s; last: {last}")

    # Transport.

    def _path(self, suffix: str) -> str:
        path = f"{self.rest_url}/v1/models/{self.model}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.version_label is not None:
            path += f"/labels/{self.version_label}"
        return path + suffix

    def _rest(self, method: str, suffix: str, body):
        url = self._path(suffix)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}

        def attempt():
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                text = error.read().decode("utf-8", "replace")
                try:
                    text = json.loads(text).get("error", text)
                except ValueError:
                    pass
                raise ServingError(
                    f"TF Serving answered {error.code} to {method} {url}: {text.rstrip('.')}."
                    + _hint(error.code, self.model),
                    code=error.code,
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                raise ServingError(
                    f"Could not reach TF Serving at {self.rest_url} ({reason}). Is the "
                    "server running and its REST port (8501) published? See serving/README.md.",
                    code=None,
                ) from None

        return self._with_retries(attempt, lambda error: error.code in (None, *RETRY_HTTP_CODES))

    def _grpc(self, service: str, method: str, request):
        import grpc

        if self._stubs is None:
            from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

            channel = grpc.insecure_channel(
                self.grpc_address,
                options=[
                    ("grpc.max_send_message_length", 64 << 20),
                    ("grpc.max_receive_message_length", 64 << 20),
                ],
            )
            self._stubs = {
                "prediction": prediction_service_pb2_grpc.PredictionServiceStub(channel),
                "model": model_service_pb2_grpc.ModelServiceStub(channel),
            }
        call = getattr(self._stubs[service], method)

        def attempt():
            try:
                return call(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code().name
                hint = ""
                if code == "UNAVAILABLE":
                    hint = (
                        f" Is TF Serving running at {self.grpc_address} with its gRPC "
                        "port (8500) published? See serving/README.md."
                    )
                elif code == "NOT_FOUND":
                    hint = _hint(404, self.model)
                raise ServingError(
                    f"TF Serving gRPC {method} failed with {code}: "
                    f"{(error.details() or '').rstrip('.')}.{hint}",
                    code=code,
                ) from None

        return self._with_retries(attempt, lambda error: error.code in RETRY_GRPC_CODES)

    def _with_retries(self, attempt, retryable):
        delay = self.backoff
        for remaining in range(self.retries, -1, -1):
            try:
                return attempt()
            except ServingError as error:
                if remaining == 0 or not retryable(error):
                    if remaining < self.retries:
                        error.args = (f"{error.args[0]} (after {self.retries + 1} attempts)",)
                    raise
            time.sleep(delay)
            delay *= 2

    def _model_spec(self, spec, signature):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.version_label is not None:
            spec.version_label = self.version_label
        if signature:
            spec.signature_name = signature


def _as_arrays(inputs) -> dict:
    if not isinstance(inputs, dict) or not inputs:
        raise ValueError(
            "predict() takes a dict of input batches, e.g. {'text': ['a gem']}; "
            f"received {type(inputs).__name__}."
        )
    arrays = {}
    for name, value in inputs.items():
        if isinstance(value, str | bytes):
            raise ValueError(
                f"Input {name!r} is one string; pass a batch (a list), e.g. [{value!r}]."
            )
        array = np.asarray(value)
        if array.dtype.kind == "S":
            array = np.char.decode(array, "utf-8")
        arrays[name] = array
    return arrays


def _hint(code: int, model: str) -> str:
    if code == 404:
        return (
            f" Check the model name ({model!r}) and version against models.config and "
            "the version folders under the model's base_path."
        )
    if code == 400:
        return " Compare the inputs with Client.metadata() (names, dtypes, shapes)."
    return ""


def _grpc_error_name(code: int) -> str:
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)
