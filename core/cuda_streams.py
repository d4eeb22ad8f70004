"""One CUDA stream per calling thread, for the GPU path's network calls and post-processing.

A worker runs several chunks at once, one per thread. On the default stream (shared by every thread) each
thread's wait for its own results would also wait for every other thread's queued kernels; on its own stream
a thread waits for its own work only, while the others keep launching theirs. Tensors never cross threads here
(each call uploads, computes and downloads its own), so no stream has to wait for another.
"""

from __future__ import annotations

import contextlib
import threading

import torch

_local = threading.local()


def thread_stream(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """Make the calling thread's own stream on ``device`` current (made on first use); nothing off CUDA."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    streams: dict[torch.device, torch.cuda.Stream] = _local.__dict__.setdefault("streams", {})
    stream = streams.get(device)
    if stream is None:
        stream = streams[device] = torch.cuda.Stream(device)
    return torch.cuda.stream(stream)
