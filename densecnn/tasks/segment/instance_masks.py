"""YOLO instance masks at the input's resolution, computed inside each box only.

Ultralytics' ``process_mask_native`` (what ``predict(retina_masks=True)`` runs) makes every mask at
the full input size: prototypes x coefficients, a bilinear upsampling, the letterbox padding cut away,
a bilinear resize to ``(H, W)``, a threshold at 0, then everything outside the box zeroed. With 30
instances on a 640x480 photo that is 9 M interpolated pixels, most of them thrown away.

Bilinear resizing is linear and separable, so the whole chain is ``A_y @ M @ A_x.T`` for one matrix
per axis (:func:`resize_maps`, built with torch's own sampling rule: ``align_corners=False``, source
coordinates clamped at 0). Each mask then costs only its box: ``A_y[rows] @ M @ A_x[cols].T``, over
the prototype rows and columns those pixels read. Same pixels as Ultralytics' (up to float rounding
at logits within ~1e-6 of 0).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


def bilinear_taps(out: int, inp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Torch's bilinear resize (``align_corners=False``) of ``inp`` samples to ``out`` along one axis:
    output ``i`` is ``(1 - frac[i]) * x[i0[i]] + frac[i] * x[i1[i]]``."""
    src = np.maximum((np.arange(out) + 0.5) * (inp / out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), inp - 1)
    return i0, np.minimum(i0 + 1, inp - 1), src - i0


def bilinear_matrix(out: int, inp: int) -> np.ndarray:
    """``(out, inp)`` weights of that resize (:func:`bilinear_taps`) as a matrix."""
    i0, i1, frac = bilinear_taps(out, inp)
    weights = np.zeros((out, inp), dtype=np.float64)
    rows = np.arange(out)
    weights[rows, i0] += 1.0 - frac
    weights[rows, i1] += frac  # i1 == i0 at the last sample: the two add up to 1
    return weights


@functools.lru_cache(maxsize=32)
def resize_maps(proto_hw: tuple[int, int], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(A_y, A_x)``: ``(H, mh)`` and ``(W, mw)`` float32 maps taking a prototype-resolution mask to
    the ``(H, W)`` input the way ``process_mask_native`` does: upsampled by 1, 2 or 4 (the smallest
    factor that makes the letterbox padding whole pixels), the padding cut (``scale_masks``' rounding),
    resized to ``(H, W)``."""
    mh, mw = proto_hw
    h, w = shape
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)
    uh, uw = f * mh, f * mw  # the upsampled prototypes' size
    g = min(uh / h, uw / w)
    pad_w, pad_h = (uw - max(round(w * g), 1)) / 2, (uh - max(round(h * g), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = top + max(round(h * g), 1), left + max(round(w * g), 1)

    def axis(out: int, start: int, stop: int, up: int, proto: int) -> np.ndarray:
        upsample = bilinear_matrix(up, proto) if up != proto else np.eye(proto)
        cut = upsample[start:stop]
        if out == stop - start:
            return cut.astype(np.float32)
        # the resize row by row from its two taps (no matmul: numpy's OpenBLAS threads busy-wait
        # ~0.1 s after each call, a core lost to the pipeline)
        i0, i1, frac = bilinear_taps(out, stop - start)
        return ((1.0 - frac)[:, None] * cut[i0] + frac[:, None] * cut[i1]).astype(np.float32)

    return axis(h, top, bottom, uh, mh), axis(w, left, right, uw, mw)


def _support(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a resize map: the first and one past the last input index it reads."""
    nonzero = rows != 0
    first = nonzero.argmax(1)
    last = rows.shape[1] - nonzero[:, ::-1].argmax(1)
    return first, last


def masks_in_boxes(
    protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(masks, windows, nonempty)``: ``(N, H, W)`` bool masks, instance ``i``'s logits
    ``coefficients[i] @ protos`` at the input's resolution above 0 inside box ``i`` (pixel columns
    ``x1 <= x < x2``, rows likewise, as Ultralytics' ``crop_mask``) and zero elsewhere; ``(N, 4)`` the
    box's pixels ``(y0, y1, x0, x1)`` (``InstanceSegmentation.windows``); ``(N,)`` whether a mask has a
    pixel.

    protos: ``(C, mh, mw)``; coefficients: ``(N, C)``; boxes: ``(N, 4)`` xyxy in input pixels."""
    h, w = shape
    masks = np.zeros((len(coefficients), h, w), dtype=bool)  # calloc: pages outside boxes stay untouched
    nonempty = np.zeros(len(coefficients), dtype=bool)
    if len(coefficients) == 0:
        return masks, np.zeros((0, 4), dtype=np.int64), nonempty
    c, mh, mw = protos.shape
    logits = (coefficients.float().cpu() @ protos.float().cpu().reshape(c, -1)).reshape(-1, mh, mw)
    maps = resize_maps((mh, mw), (h, w))
    ay, ax = (torch.from_numpy(m) for m in maps)
    (y_first, y_last), (x_first, x_last) = (_support(m) for m in maps)
    edges = np.ceil(boxes.float().cpu().numpy()).astype(np.int64)
    edges[:, 0::2] = edges[:, 0::2].clip(0, w)
    edges[:, 1::2] = edges[:, 1::2].clip(0, h)
    for i, (x0, y0, x1, y1) in enumerate(edges):
        if x1 <= x0 or y1 <= y0:
            continue
        p0, p1 = y_first[y0:y1].min(), y_last[y0:y1].max()
        q0, q1 = x_first[x0:x1].min(), x_last[x0:x1].max()
        window = ay[y0:y1, p0:p1] @ logits[i, p0:p1, q0:q1] @ ax[x0:x1, q0:q1].T
        inside = (window > 0).numpy()
        masks[i, y0:y1, x0:x1] = inside
        nonempty[i] = inside.any()
    return masks, edges[:, [1, 3, 0, 2]], nonempty
