"""Tomographic projection operators: forward projection ``A`` and its exact adjoint ``A^T``.

Both projectors use the same voxel-driven model, so they agree where their geometries do:
each voxel is sampled at 4 sub-pixel points in the object x-z plane (offsets of +-0.25 voxel,
as in the published RESIRE GPU code; ``subpixel=False`` uses the voxel centre only), each
sample is projected along the beam of a projection and its value (a quarter of the voxel's)
is shared with the neighbouring detector pixels by linear (single axis) or bilinear
(general orientation) interpolation. The adjoint gathers with the same weights, so
``<A x, y> = <x, A^T y>`` to rounding.

Geometry and units follow :mod:`napari_aet.core.geometry`: volumes ``(nz, ny, nx)`` voxels,
projections ``(n, ny, nx)`` pixels of the same size, rotation centre ``n // 2`` on every
axis, the 0-degree projection is ``volume.sum(axis=0)``.

* :class:`SingleAxisProjector` (tilt about y only): slices along the tilt axis are
  independent, so one sparse interpolation matrix (``n_angles * nx`` by ``nz * nx``) serves
  every slice at once as a single sparse-times-dense product, threaded over slabs of y.
* :class:`BatchedGeneralProjector` (per-projection Euler angles ``(phi, theta, psi)`` of a
  few degrees, as refined data sets have): the single-axis batching with a small detector
  patch per slice, moved by its slice-dependent sub-pixel offset; about 1-2.5x the
  single-axis cost per iteration (benchmarks/README.md).
* :class:`GeneralProjector` (any Euler angles): the same model in 3D, computed on the fly one
  projection at a time (slow; the reference for the others).
* :func:`make_projector` picks one; it never uses the single-axis path for angles with
  non-zero ``phi``/``psi`` unless asked to within a tolerance, and then it warns.

Both accept ``gpu=True`` to run on CuPy (imported lazily, see :func:`get_array_module`).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from napari_aet.core.geometry import as_euler_angles, grid_center, rotation_matrices

#: Sub-pixel sample offsets ``(dz, dx)`` in voxels (object frame), each with weight 1/4.
SUBPIXEL_OFFSETS = ((-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25))

#: Largest ``|phi|``, ``|psi|`` (degrees) for which :func:`make_projector` picks the batched
#: general projector; beyond it the on-the-fly :class:`GeneralProjector`.
BATCHED_MAX_DEG = 5.0

CUPY_HINT = ("GPU reconstruction needs CuPy and a CUDA device: install the CuPy wheel that "
             "matches your CUDA (e.g. `pip install cupy-cuda12x`) or run on the CPU")

_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def _executor(n_threads: int) -> ThreadPoolExecutor:
    if n_threads not in _EXECUTORS:
        _EXECUTORS[n_threads] = ThreadPoolExecutor(n_threads, thread_name_prefix="aet-projector")
    return _EXECUTORS[n_threads]


def gpu_available() -> tuple[bool, str]:
    """Whether CuPy is importable and sees a CUDA device, and a reason when it does not."""
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        return False, "CuPy is not installed (pip install cupy-cuda12x)"
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        return False, f"CuPy is installed but CUDA is not usable: {exc}"
    if n < 1:
        return False, "CuPy is installed but no CUDA device was found"
    return True, f"{n} CUDA device(s)"


def get_array_module(gpu: bool = False):
    """``numpy``, or ``cupy`` when ``gpu`` (raises ``RuntimeError`` with a hint if unusable)."""
    if not gpu:
        return np
    ok, reason = gpu_available()
    if not ok:
        raise RuntimeError(f"{CUPY_HINT}; {reason}")
    import cupy

    return cupy


def to_numpy(array) -> np.ndarray:
    """A host (numpy) copy of a numpy or CuPy array."""
    if hasattr(array, "get"):
        return array.get()
    return np.asarray(array)


def _sparse_module(xp):
    if xp is np:
        return sp
    import cupyx.scipy.sparse as cusp

    return cusp


class Projector:
    """Common interface of the projectors.

    Attributes
    ----------
    angles_deg : ``(n, 3)`` Euler angles ``(phi, theta, psi)`` in degrees.
    volume_shape : ``(nz, ny, nx)`` voxels.
    projection_shape : ``(n, ny, nx)`` pixels.
    subpixel : 4 sub-pixel samples per voxel (True) or one at the voxel centre.
    gpu : whether arrays live on the GPU (CuPy); ``xp`` is the array module.
    single_axis : True for the single-tilt-axis fast path.

    ``forward`` / ``adjoint`` take and return arrays in the standard layouts
    (``(nz, ny, nx)`` and ``(n, ny, nx)``). Iterative algorithms work in the projector's
    *native* layouts (``to_native_*`` / ``from_native_*``, ``forward_native`` /
    ``adjoint_native``), which avoid a transpose per iteration.
    """

    single_axis = False

    def __init__(self, angles_deg, volume_shape, subpixel: bool = True, gpu: bool = False,
                 dtype=np.float32, convention: str = "zyx"):
        self.angles_deg = as_euler_angles(angles_deg)
        if len(volume_shape) != 3 or min(volume_shape) < 1:
            raise ValueError(f"volume_shape must be (nz, ny, nx) voxels; got {volume_shape}")
        self.volume_shape = tuple(int(n) for n in volume_shape)
        nz, ny, nx = self.volume_shape
        self.n_angles = len(self.angles_deg)
        self.projection_shape = (self.n_angles, ny, nx)
        self.subpixel = bool(subpixel)
        self.gpu = bool(gpu)
        self.xp = get_array_module(gpu)
        self.dtype = np.dtype(dtype)
        self.convention = convention
        self.rotations = rotation_matrices(self.angles_deg, convention)

    @property
    def offsets(self):
        return SUBPIXEL_OFFSETS if self.subpixel else ((0.0, 0.0),)

    # --- standard layout -------------------------------------------------------------------
    def _check(self, array, shape, what):
        if tuple(array.shape) != tuple(shape):
            raise ValueError(f"{what} must have shape {tuple(shape)}; got {tuple(array.shape)}")

    def forward(self, volume):
        """Projections ``(n, ny, nx)`` of a volume ``(nz, ny, nx)`` (same units per voxel)."""
        self._check(volume, self.volume_shape, "volume")
        native = self.forward_native(self.to_native_volume(volume))
        return self.from_native_projections(native)

    def adjoint(self, projections):
        """Back-projection ``A^T p`` ``(nz, ny, nx)`` of projections ``(n, ny, nx)``."""
        self._check(projections, self.projection_shape, "projections")
        native = self.adjoint_native(self.to_native_projections(projections))
        return self.from_native_volume(native)

    # --- native layout (identity here; the single-axis projector overrides) ---------------
    def to_native_volume(self, volume):
        return self.xp.asarray(volume, dtype=self.dtype)

    def from_native_volume(self, native):
        return native

    def to_native_projections(self, projections):
        return self.xp.asarray(projections, dtype=self.dtype)

    def from_native_projections(self, native):
        return native

    def native_volume_zeros(self):
        return self.to_native_volume(np.zeros(self.volume_shape, self.dtype))

    def central_slices(self, native) -> dict:
        """Host copies of the central orthogonal slices ``{'yx', 'zx', 'zy'}`` of a volume."""
        vol = self.from_native_volume(native)
        nz, ny, nx = self.volume_shape
        return {"yx": to_numpy(vol[nz // 2]), "zx": to_numpy(vol[:, ny // 2, :]),
                "zy": to_numpy(vol[:, :, nx // 2])}

    def forward_native(self, native_volume):
        raise NotImplementedError

    def adjoint_native(self, native_projections):
        raise NotImplementedError


class SingleAxisProjector(Projector):
    """Projector for a single tilt axis (y): one sparse matrix applied to every slice.

    The matrix maps one x-z slice (``nz * nx`` voxels) to the ``n * nx`` detector pixels of
    that slice's row in all projections; it is stored once, transposed (CSR, voxel rows), and
    the forward product uses its CSC view. Native layouts: volume
    ``(n_slabs, nz * nx, ny_slab)``, projections ``(n_slabs, n * nx, ny_slab)``, where the
    y axis is split into ``n_slabs`` contiguous slabs (zero-padded) processed by threads.

    Parameters
    ----------
    angles_deg : ``(n,)`` tilt angles or ``(n, 3)`` Euler triplets with ``phi = psi = 0``
        (non-zero values are ignored: use :func:`make_projector`, which checks them).
    volume_shape : ``(nz, ny, nx)`` voxels; projections are ``(n, ny, nx)`` pixels.
    subpixel : sample each voxel at 4 points +-0.25 voxel (True) or at its centre.
    gpu : run on CuPy.
    n_threads : CPU threads (slabs along y); default ``min(os.cpu_count(), 8)``.
    """

    single_axis = True

    def __init__(self, angles_deg, volume_shape, subpixel: bool = True, gpu: bool = False,
                 dtype=np.float32, n_threads: int | None = None, convention: str = "zyx"):
        super().__init__(angles_deg, volume_shape, subpixel, gpu, dtype, convention)
        nz, ny, nx = self.volume_shape
        if gpu:
            n_threads = 1
        elif n_threads is None:
            n_threads = min(os.cpu_count() or 1, 8)
        self.n_slabs = max(1, min(int(n_threads), ny // 8 or 1))
        self.ny_slab = -(-ny // self.n_slabs)
        self.matrix_T = self._build_matrix()  # (nz*nx, n*nx) CSR
        if gpu:
            self.matrix_T = _sparse_module(self.xp).csr_matrix(self.matrix_T)
        self._forward_op = self.matrix_T.T  # CSC view, no copy (scatter from voxels)

    @property
    def operator_nbytes(self) -> int:
        """Bytes held by the sparse interpolation matrix."""
        m = self.matrix_T
        return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)

    def _build_matrix(self):
        nz, ny, nx = self.volume_shape
        cz, cx = grid_center((nz, nx))
        cu = nx // 2
        iz, ix = np.meshgrid(np.arange(nz, dtype=float), np.arange(nx, dtype=float),
                             indexing="ij")
        voxel = (np.arange(nz)[:, None] * nx + np.arange(nx)[None, :]).ravel().astype(np.int32)
        weight = 1.0 / len(self.offsets)
        blocks = []
        for k in range(self.n_angles):
            a = self.rotations[k, :, 0]  # p_x = a . (x, y, z)
            rows, cols, vals = [], [], []
            for dz, dx in self.offsets:
                u = (a[0] * (ix - cx + dx) + a[2] * (iz - cz + dz) + cu).ravel()
                i0 = np.floor(u)
                frac = u - i0
                i0 = i0.astype(np.int64)
                for di, w in ((0, 1.0 - frac), (1, frac)):
                    col = i0 + di
                    ok = (col >= 0) & (col < nx) & (w > 0)
                    rows.append(voxel[ok])
                    cols.append(col[ok].astype(np.int32))
                    vals.append(weight * w[ok])
            block = sp.csr_matrix(
                (np.concatenate(vals).astype(self.dtype),
                 (np.concatenate(rows), np.concatenate(cols))),
                shape=(nz * nx, nx))
            block.sum_duplicates()
            blocks.append(block)
        matrix_T = sp.hstack(blocks, format="csr")
        matrix_T.sum_duplicates()
        return matrix_T

    # --- layouts -----------------------------------------------------------------------------
    def _to_native(self, array, n_rows):
        xp = self.xp
        array = xp.asarray(array, dtype=self.dtype)
        lead, ny, nx = array.shape
        pad = self.n_slabs * self.ny_slab - ny
        if pad:
            array = xp.concatenate([array, xp.zeros((lead, pad, nx), self.dtype)], axis=1)
        array = array.reshape(lead, self.n_slabs, self.ny_slab, nx).transpose(1, 0, 3, 2)
        return xp.ascontiguousarray(array).reshape(self.n_slabs, n_rows, self.ny_slab)

    def _from_native(self, native, lead):
        nz, ny, nx = self.volume_shape
        array = native.reshape(self.n_slabs, lead, nx, self.ny_slab).transpose(1, 0, 3, 2)
        array = array.reshape(lead, self.n_slabs * self.ny_slab, nx)[:, :ny]
        return self.xp.ascontiguousarray(array)

    def to_native_volume(self, volume):
        nz, ny, nx = self.volume_shape
        return self._to_native(volume, nz * nx)

    def from_native_volume(self, native):
        return self._from_native(native, self.volume_shape[0])

    def to_native_projections(self, projections):
        return self._to_native(projections, self.n_angles * self.volume_shape[2])

    def from_native_projections(self, native):
        return self._from_native(native, self.n_angles)

    def native_volume_zeros(self):
        nz, ny, nx = self.volume_shape
        return self.xp.zeros((self.n_slabs, nz * nx, self.ny_slab), self.dtype)

    def central_slices(self, native) -> dict:
        nz, ny, nx = self.volume_shape
        vol = native.reshape(self.n_slabs, nz, nx, self.ny_slab)
        yx = vol[:, nz // 2].transpose(0, 2, 1).reshape(-1, nx)[:ny]
        slab, j = divmod(ny // 2, self.ny_slab)
        zx = vol[slab, :, :, j]
        zy = vol[:, :, nx // 2, :].transpose(1, 0, 2).reshape(nz, -1)[:, :ny]
        return {"yx": to_numpy(yx).copy(), "zx": to_numpy(zx).copy(), "zy": to_numpy(zy).copy()}

    # --- products ------------------------------------------------------------------------------
    def _apply(self, op, native):
        if self.n_slabs == 1:
            return (op @ native[0])[None]
        parts = list(_executor(self.n_slabs).map(lambda block: op @ block, native))
        return np.stack(parts)

    def forward_native(self, native_volume):
        return self._apply(self._forward_op, native_volume)

    def adjoint_native(self, native_projections):
        return self._apply(self.matrix_T, native_projections)


class GeneralProjector(Projector):
    """Projector for arbitrary per-projection Euler angles ``(phi, theta, psi)``.

    Voxel-driven like :class:`SingleAxisProjector` but in 3D: each sub-pixel sample (offsets
    in the object x-z plane) lands at detector position ``(p_y, p_x)`` and is shared with the
    4 neighbouring pixels by bilinear weights. With ``phi = psi = 0`` the weights along y are
    exactly 1 and 0, so it reproduces the single-axis projector. Computed on the fly, one
    projection and a chunk of z planes at a time (no stored matrix).

    Parameters
    ----------
    angles_deg : ``(n, 3)`` Euler angles in degrees (``convention`` as in
        :func:`napari_aet.core.geometry.rotation_matrices`).
    volume_shape : ``(nz, ny, nx)`` voxels; projections are ``(n, ny, nx)`` pixels.
    chunk_elements : voxel samples handled per vectorised step (memory vs. speed).
    """

    def __init__(self, angles_deg, volume_shape, subpixel: bool = True, gpu: bool = False,
                 dtype=np.float32, convention: str = "zyx", chunk_elements: int = 1 << 21):
        super().__init__(angles_deg, volume_shape, subpixel, gpu, dtype, convention)
        nz, ny, nx = self.volume_shape
        self.chunk_planes = max(1, int(chunk_elements) // (ny * nx))

    def _samples(self, k, z0, z1):
        """Flat padded-detector indices ``(4, m)`` and weights ``(4, m)`` for one offset."""
        xp = self.xp
        nz, ny, nx = self.volume_shape
        cz, cy, cx = grid_center(self.volume_shape)
        rot = self.rotations[k]
        a, b = rot[:, 0], rot[:, 1]  # p_x = a . r, p_y = b . r, r = (x, y, z)
        z = xp.arange(z0, z1, dtype=xp.float64)[:, None, None] - cz
        y = xp.arange(ny, dtype=xp.float64)[None, :, None] - cy
        x = xp.arange(nx, dtype=xp.float64)[None, None, :] - cx
        width = nx + 2  # one pixel of padding on each side catches out-of-range weights
        for dz, dx in self.offsets:
            u = a[0] * (x + dx) + a[1] * y + a[2] * (z + dz) + (nx // 2)
            v = b[0] * (x + dx) + b[1] * y + b[2] * (z + dz) + (ny // 2)
            u0 = xp.floor(u)
            v0 = xp.floor(v)
            fu = (u - u0).ravel()
            fv = (v - v0).ravel()
            u0 = u0.ravel()
            v0 = v0.ravel()
            idx, wts = [], []
            for dv, wv in ((0, 1.0 - fv), (1, fv)):
                for du, wu in ((0, 1.0 - fu), (1, fu)):
                    uu = u0 + du
                    vv = v0 + dv
                    inside = (uu >= 0) & (uu < nx) & (vv >= 0) & (vv < ny)
                    flat = xp.where(inside, (vv + 1) * width + (uu + 1), 0).astype(xp.int64)
                    idx.append(flat)
                    wts.append(wv * wu * inside)
            yield xp.stack(idx), xp.stack(wts)

    def forward_native(self, native_volume):
        xp = self.xp
        nz, ny, nx = self.volume_shape
        size = (ny + 2) * (nx + 2)
        weight = 1.0 / len(self.offsets)
        out = xp.zeros((self.n_angles, ny, nx), self.dtype)
        for k in range(self.n_angles):
            acc = xp.zeros(size, xp.float64)
            for z0 in range(0, nz, self.chunk_planes):
                z1 = min(nz, z0 + self.chunk_planes)
                values = native_volume[z0:z1].ravel().astype(xp.float64) * weight
                for idx, wts in self._samples(k, z0, z1):
                    acc += xp.bincount(idx.ravel(), weights=(wts * values).ravel(),
                                       minlength=size)
            out[k] = acc.reshape(ny + 2, nx + 2)[1:-1, 1:-1]
        return out

    def adjoint_native(self, native_projections):
        xp = self.xp
        nz, ny, nx = self.volume_shape
        weight = 1.0 / len(self.offsets)
        out = xp.zeros(self.volume_shape, xp.float64)
        padded = xp.zeros((ny + 2, nx + 2), xp.float64)
        for k in range(self.n_angles):
            padded[1:-1, 1:-1] = native_projections[k]
            flat = padded.ravel()
            for z0 in range(0, nz, self.chunk_planes):
                z1 = min(nz, z0 + self.chunk_planes)
                acc = xp.zeros((z1 - z0) * ny * nx, xp.float64)
                for idx, wts in self._samples(k, z0, z1):
                    acc += (wts * flat[idx]).sum(axis=0)
                out[z0:z1] += acc.reshape(z1 - z0, ny, nx) * weight
        return out.astype(self.dtype)


class BatchedGeneralProjector(SingleAxisProjector):
    """Per-projection Euler angles on the batched path: one sparse matrix for every y slice.

    For small ``phi``/``psi`` the detector position of a voxel sample splits into a part that
    depends on ``(x, z)`` only and a part linear in the slice index ``y``::

        u = U(x, z) + a_y (y - c_y),   v = V(x, z) + y + (b_y - 1)(y - c_y)

    (``a``, ``b`` the first two columns of the rotation). One sparse matrix per projection
    maps an x-z slice to a small detector patch (``U`` across, a few rows of ``V``) with the
    same bilinear sub-pixel weights as :class:`GeneralProjector`; it is applied to every slice
    at once as in :class:`SingleAxisProjector`. Each slice's patch is then moved by its
    ``y``-dependent offset (fractions of a pixel for angles of a fraction of a degree) with
    separable linear interpolation and summed into the detector rows. The adjoint applies the
    transposes in reverse order, so ``<A x, y> = <x, A^T y>`` to rounding. With
    ``phi = psi = 0`` the offsets vanish and the result equals the single-axis projector;
    otherwise it differs from :class:`GeneralProjector` only by the second linear
    interpolation of the offset (a slight extra blur, under 1 % of the projection for
    offsets below a pixel; :func:`make_projector` uses it up to :data:`BATCHED_MAX_DEG`).

    Native layouts: volume as :class:`SingleAxisProjector`; projections ``(n, nx, ny)``.
    Parameters as :class:`SingleAxisProjector`.
    """

    single_axis = False

    def _build_matrix(self):
        nz, ny, nx = self.volume_shape
        cz, cy, cx = grid_center(self.volume_shape)
        rot = self.rotations
        j = np.arange(ny) - cy
        shift_u = rot[:, 1, 0][:, None] * j[None]  # a_y (y - c_y), pixels, (n, ny)
        shift_v = (rot[:, 1, 1] - 1.0)[:, None] * j[None]
        iz, ix = np.meshgrid(np.arange(nz, dtype=float) - cz, np.arange(nx, dtype=float) - cx,
                             indexing="ij")
        samples = []
        for dz, dx in self.offsets:
            u = rot[:, 0, 0, None] * (ix + dx).ravel() + rot[:, 2, 0, None] * (iz + dz).ravel()
            v = rot[:, 0, 1, None] * (ix + dx).ravel() + rot[:, 2, 1, None] * (iz + dz).ravel()
            samples.append((u + nx // 2, v))
        self.row_min = int(min(np.floor(v).min() for _, v in samples))
        self.n_rows = int(max(np.floor(v).max() for _, v in samples)) - self.row_min + 2
        self.pad_u = int(np.ceil(np.abs(shift_u).max())) + 1
        width = nx + 2 * self.pad_u
        self.patch_size = self.n_rows * width
        # per projection: runs of slices with the same whole-pixel offsets
        iu, iv = np.floor(shift_u).astype(int), np.floor(shift_v).astype(int)
        self._frac_u = (shift_u - iu).astype(self.dtype)
        self._frac_v = (shift_v - iv).astype(self.dtype)
        self._runs = []
        for k in range(self.n_angles):
            change = np.flatnonzero((np.diff(iu[k]) != 0) | (np.diff(iv[k]) != 0)) + 1
            edges = np.concatenate([[0], change, [ny]])
            self._runs.append([(int(a), int(b), int(iu[k, a]), int(iv[k, a]))
                               for a, b in zip(edges[:-1], edges[1:])])
        lowest = self.row_min + int(iv.min())
        self.pad_v = max(0, -lowest)
        self.n_padded_rows = self.pad_v + ny + self.n_rows + self.row_min + int(iv.max()) + 2
        self.n_padded_rows = max(self.n_padded_rows, self.pad_v + ny)

        voxel = (np.arange(nz)[:, None] * nx + np.arange(nx)[None, :]).ravel().astype(np.int64)
        weight = 1.0 / len(self.offsets)
        blocks = []
        for k in range(self.n_angles):
            rows, cols, vals = [], [], []
            for u, v in samples:
                u0, v0 = np.floor(u[k]), np.floor(v[k])
                fu, fv = u[k] - u0, v[k] - v0
                w0 = u0.astype(np.int64) + self.pad_u
                r0 = v0.astype(np.int64) - self.row_min
                for dr, wv in ((0, 1.0 - fv), (1, fv)):
                    for dw, wu in ((0, 1.0 - fu), (1, fu)):
                        col = w0 + dw
                        w = wv * wu
                        ok = (col >= 0) & (col < width) & (w > 0)
                        rows.append(voxel[ok])
                        cols.append((r0[ok] + dr) * width + col[ok])
                        vals.append(weight * w[ok])
            block = sp.csr_matrix(
                (np.concatenate(vals).astype(self.dtype),
                 (np.concatenate(rows), np.concatenate(cols))),
                shape=(nz * nx, self.patch_size))
            block.sum_duplicates()
            blocks.append(block)
        matrix_T = sp.hstack(blocks, format="csr")
        matrix_T.sum_duplicates()
        return matrix_T

    # --- layouts -----------------------------------------------------------------------------
    def to_native_projections(self, projections):
        xp = self.xp
        projections = xp.asarray(projections, dtype=self.dtype)
        return xp.ascontiguousarray(projections.transpose(0, 2, 1))

    def from_native_projections(self, native):
        return self.xp.ascontiguousarray(native.transpose(0, 2, 1))

    # --- products ------------------------------------------------------------------------------
    def _patches(self, n_slabs_native):
        """``(n, n_rows, width, ny_padded)`` view of the stacked per-slab patch products."""
        n_rows, width = self.n_rows, self.volume_shape[2] + 2 * self.pad_u
        stacked = n_slabs_native.transpose(1, 0, 2).reshape(self.n_angles, n_rows, width, -1)
        return stacked

    def forward_native(self, native_volume):
        xp = self.xp
        nz, ny, nx = self.volume_shape
        patches = self._patches(self._apply(self._forward_op, native_volume))
        out = xp.zeros((self.n_angles, nx, self.n_padded_rows), self.dtype)
        base = self.pad_v + self.row_min
        p = self.pad_u
        for k in range(self.n_angles):
            fu_k, fv_k = self._frac_u[k], self._frac_v[k]
            for a, b, iu, iv in self._runs[k]:
                fu = xp.asarray(fu_k[a:b])
                fv = xp.asarray(fv_k[a:b])
                moved = patches[k, :, p - iu:p - iu + nx, a:b] * (1 - fu)
                moved += patches[k, :, p - iu - 1:p - iu - 1 + nx, a:b] * fu
                for r in range(self.n_rows):
                    v0 = base + r + iv + a
                    out[k, :, v0:v0 + b - a] += moved[r] * (1 - fv)
                    out[k, :, v0 + 1:v0 + 1 + b - a] += moved[r] * fv
        return xp.ascontiguousarray(out[:, :, self.pad_v:self.pad_v + ny])

    def adjoint_native(self, native_projections):
        xp = self.xp
        nz, ny, nx = self.volume_shape
        padded = xp.zeros((self.n_angles, nx, self.n_padded_rows), self.dtype)
        padded[:, :, self.pad_v:self.pad_v + ny] = native_projections
        width = nx + 2 * self.pad_u
        patches = xp.zeros((self.n_angles, self.n_rows, width, self.n_slabs * self.ny_slab),
                           self.dtype)
        base = self.pad_v + self.row_min
        p = self.pad_u
        for k in range(self.n_angles):
            fu_k, fv_k = self._frac_u[k], self._frac_v[k]
            for a, b, iu, iv in self._runs[k]:
                fu = xp.asarray(fu_k[a:b])
                fv = xp.asarray(fv_k[a:b])
                gathered = xp.empty((self.n_rows, nx, b - a), self.dtype)
                for r in range(self.n_rows):
                    v0 = base + r + iv + a
                    gathered[r] = padded[k, :, v0:v0 + b - a] * (1 - fv)
                    gathered[r] += padded[k, :, v0 + 1:v0 + 1 + b - a] * fv
                patches[k, :, p - iu:p - iu + nx, a:b] += gathered * (1 - fu)
                patches[k, :, p - iu - 1:p - iu - 1 + nx, a:b] += gathered * fu
        native = patches.reshape(self.patch_size * self.n_angles, self.n_slabs, self.ny_slab)
        native = xp.ascontiguousarray(native.transpose(1, 0, 2))
        return self._apply(self.matrix_T, native)


def make_projector(angles_deg, volume_shape, subpixel: bool = True, gpu: bool = False,
                   kind: str = "auto", single_axis_tol_deg: float = 0.0,
                   convention: str = "zyx", **kwargs) -> Projector:
    """Choose and build a projector for these angles.

    Parameters
    ----------
    angles_deg : ``(n,)`` tilt angles or ``(n, 3)`` Euler triplets ``(phi, theta, psi)``.
    volume_shape : ``(nz, ny, nx)`` voxels.
    kind : ``"auto"`` (single axis when every ``phi`` and ``psi`` is zero, the batched
        general projector up to :data:`BATCHED_MAX_DEG`, the on-the-fly one beyond),
        ``"single_axis"``, ``"batched"`` (:class:`BatchedGeneralProjector`) or ``"general"``
        (:class:`GeneralProjector`).
    single_axis_tol_deg : largest ``|phi|``, ``|psi|`` (degrees) that ``"auto"`` may ignore
        to use the single-axis path; a ``UserWarning`` says when it does.
    """
    angles = as_euler_angles(angles_deg)
    off_axis = float(np.max(np.abs(angles[:, [0, 2]]))) if len(angles) else 0.0
    if kind not in ("auto", "single_axis", "batched", "general"):
        raise ValueError(f"unknown projector kind {kind!r}; use 'auto', 'single_axis', "
                         "'batched' or 'general'")
    batched_kwargs = {k: v for k, v in kwargs.items() if k in ("dtype", "n_threads")}
    if kind == "general" or (kind == "auto" and off_axis > max(BATCHED_MAX_DEG,
                                                              single_axis_tol_deg)):
        return GeneralProjector(angles, volume_shape, subpixel, gpu, convention=convention,
                                **{k: v for k, v in kwargs.items()
                                   if k in ("dtype", "chunk_elements")})
    if kind == "batched":
        return BatchedGeneralProjector(angles, volume_shape, subpixel, gpu,
                                       convention=convention, **batched_kwargs)
    exact = off_axis <= 1e-9
    if kind == "single_axis" and not exact and off_axis > single_axis_tol_deg:
        raise ValueError(
            f"the single-axis projector cannot represent phi/psi up to {off_axis:.3g} degrees; "
            "use kind='batched' or 'general' (or raise single_axis_tol_deg to ignore them)")
    if exact or off_axis <= single_axis_tol_deg:
        if not exact:
            warnings.warn(
                f"phi/psi of up to {off_axis:.3g} degrees ignored (tolerance "
                f"{single_axis_tol_deg} degrees): using the single-axis projector",
                UserWarning, stacklevel=2)
        single = angles.copy()
        single[:, [0, 2]] = 0.0
        return SingleAxisProjector(single, volume_shape, subpixel, gpu, convention=convention,
                                   **batched_kwargs)
    return BatchedGeneralProjector(angles, volume_shape, subpixel, gpu, convention=convention,
                                   **batched_kwargs)
