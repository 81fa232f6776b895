"""Triton python model: word-piece windows -> tag logits with ONNX Runtime.

The windows of every request in a dynamic batch are encoded together, in micro-batches of similar
length (medner.inference.encode_sorted), then handed back request by request. With the parameter
``device: gpu`` (configs/gpu.pbtxt) the session runs on ONNX Runtime's TensorRT or CUDA provider
(medner.inference.gpu_providers), on the instance's GPU, and the load fails when neither works there (a GPU
server silently on the CPU would pass its readiness probe); the CPU provider otherwise.
"""

import json
import os
import sys

# The python backend stub ignores PYTHONPATH: `medner serve` passes the project's site-packages here.
sys.path[:0] = [p for p in os.environ.get("MEDNER_SITE_PACKAGES", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from medner.inference import DEFAULT_MICRO_BATCH, encode_sorted, gpu_providers, ort_encoder  # noqa: E402
from medner.triton import model_parameters  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        gpu = params.get("device") == "gpu"
        providers = (gpu_providers(int(args.get("model_instance_device_id") or 0), params.get("fp16", "true") == "true",
                                   params.get("engine_cache", "")) if gpu else None)
        # asked for a GPU: the load fails (the model is not ready) unless a GPU provider runs the session, or the
        # config says the CPU will do (require_gpu false: the GPU path run on a CPU machine, as its test does)
        self.encode = ort_encoder(os.path.join(version_dir, params.get("model_file", "model.onnx")),
                                  int(params.get("threads", 1)), params.get("spinning", "true") == "true", providers,
                                  require_gpu=gpu and params.get("require_gpu", "true") == "true")
        self.micro_batch = int(params.get("micro_batch", DEFAULT_MICRO_BATCH))
        logits = pb_utils.get_output_config_by_name(json.loads(args["model_config"]), "logits")
        self.tags = int(logits["dims"][-1])  # the tag set the config declares (medner.labels.BIO_TAGS)

    def execute(self, requests):
        responses = [None] * len(requests)
        shapes, ids_rows, mask_rows = [], [], []
        for index, request in enumerate(requests):
            ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            if ids.shape != mask.shape or ids.ndim != 3:
                message = f"input_ids {ids.shape} and attention_mask {mask.shape} must share one 3-d shape"
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
                continue
            shapes.append((index, ids.shape))
            ids_rows.append(ids.reshape(-1, ids.shape[-1]))
            mask_rows.append(mask.reshape(-1, mask.shape[-1]))
        if not shapes:
            return responses
        width = max(rows.shape[1] for rows in ids_rows)
        all_ids = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in ids_rows])
        all_mask = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in mask_rows])
        real = np.flatnonzero(all_mask.sum(axis=1) > 0)  # padded windows are all zero: skip them
        logits = np.zeros((len(all_ids), width, self.tags), dtype=np.float32)
        if len(real):
            encoded = encode_sorted(all_ids[real], all_mask[real], self.encode, self.micro_batch)
            logits[real, : encoded.shape[1]] = encoded
        start = 0
        for index, shape in shapes:
            count = shape[0] * shape[1]
            block = logits[start: start + count, : shape[2]].reshape(*shape, self.tags)
            responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor("logits", block)])
            start += count
        return responses
