"""The collapse: pure tensor maths, no model needed.

Per module, the forget set's activations (or output gradients) have a *common* part: their
mean direction and their top principal components. CIR removes that part from every token
before the weight update is formed, so the update is built from what is specific to the
facts being forgotten.

The paper projects out each direction in turn (the mean first, then the components). Here
the mean direction and the components are orthonormalised together first and the whole
span is projected out at once: the same subspace, removed exactly.
"""

from __future__ import annotations

import torch


class StreamingMoments:
    """Running count, sum and sum of outer products of row vectors.

    Memory is O(d^2) whatever the number of tokens, so the statistics do not grow with the
    forget set. Sums are kept in float32 by default (cheap next to the model's own matmuls);
    the covariance is formed in float64.
    """

    def __init__(self, dim: int, device=None, dtype: torch.dtype = torch.float32):
        self.count = 0
        self.sum = torch.zeros(dim, dtype=dtype, device=device)
        self.outer = torch.zeros(dim, dim, dtype=dtype, device=device)

    def update(self, x: torch.Tensor) -> None:
        """x: (T, d) rows to add."""
        x = x.detach().to(self.sum.dtype)
        self.count += x.shape[0]
        self.sum += x.sum(0)
        self.outer += x.T @ x

    def tensors(self) -> list[torch.Tensor]:
        """The tensors to sum across processes (count rides along as a tensor)."""
        return [self.sum, self.outer]

    @property
    def mean(self) -> torch.Tensor:
        return self.sum.double() / max(self.count, 1)

    def second_moment(self) -> torch.Tensor:
        return self.outer.double() / max(self.count, 1)

    def covariance(self) -> torch.Tensor:
        mean = self.mean
        return self.second_moment() - torch.outer(mean, mean)

    def principal(self, k: int, centred: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(eigenvalues (k,), eigenvectors as rows (k, d)), largest first, of the covariance
        (`centred`) or of the uncentred second moment."""
        return top_components(self.covariance() if centred else self.second_moment(), k)


class RowMoments(StreamingMoments):
    """The same statistics, kept as the rows themselves while there are at most as many rows as
    dimensions: n x d numbers instead of d x d. A forget set of a few thousand tokens on a
    14,336-wide projection (Llama-3.1-8B's MLP) holds a fifth of a covariance's memory. The
    components come from a randomized SVD of the centred rows; past d rows, the rows are folded
    into the sum of outer products and it is a StreamingMoments."""

    def __init__(self, dim: int, device=None, dtype: torch.dtype = torch.float32):
        self.count = 0
        self.sum = torch.zeros(dim, dtype=dtype, device=device)
        self.outer: torch.Tensor | None = None
        self.rows: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(self.sum.dtype)
        self.count += x.shape[0]
        self.sum += x.sum(0)
        if self.outer is None and self.count <= self.sum.shape[0]:
            self.rows.append(x.clone())
            return
        self._fold()
        self.outer += x.T @ x

    def _fold(self) -> None:
        """From rows to the sum of their outer products (for good)."""
        if self.outer is None:
            self.outer = torch.zeros(self.sum.shape[0], self.sum.shape[0], dtype=self.sum.dtype, device=self.sum.device)
            for rows in self.rows:
                self.outer += rows.T @ rows
            self.rows = []

    def tensors(self) -> list[torch.Tensor]:
        self._fold()  # summed across processes as sums of outer products
        return super().tensors()

    def second_moment(self) -> torch.Tensor:
        self._fold()
        return super().second_moment()

    def principal(self, k: int, centred: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if self.outer is not None:
            return super().principal(k, centred)
        x = torch.cat(self.rows).double()  # (n, d)
        if centred:
            x = x - self.mean
        return rows_components(x / max(self.count, 1) ** 0.5, k)


def rows_components(x: torch.Tensor, k: int, iterations: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues (k,), eigenvectors as rows (k, d)) of x^T x, largest first, from the rows x
    (n, d), never forming the d x d matrix: a randomized SVD (as `top_components`, with x^T (x q)
    for the product) when k is small next to both sides, else the exact SVD."""
    k = min(k, *x.shape)
    if 2 * k + 8 >= min(x.shape):
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        return (s ** 2)[:k], vh[:k]
    return _randomized_top(lambda q: x.T @ (x @ q), x.shape[1], k, x.dtype, x.device, iterations, seed)


def top_components(covariance: torch.Tensor, k: int, exact_below: int = 1024, iterations: int = 8,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues (k,), eigenvectors as rows (k, d)) of a symmetric PSD matrix, largest first.

    Exact `eigh` for widths below `exact_below`; above it, randomized subspace iteration with
    k oversampling vectors and `iterations` power steps (the full eigh of a 1536-wide matrix
    costs ~20x more and would dominate an epoch).
    """
    d = covariance.shape[0]
    k = min(k, d)
    if d < exact_below or 2 * k >= d:
        values, vectors = torch.linalg.eigh(covariance)  # ascending
        return values.flip(0)[:k], vectors.flip(1)[:, :k].T
    return _randomized_top(lambda q: covariance @ q, d, k, covariance.dtype, covariance.device, iterations, seed)


def _randomized_top(product, d: int, k: int, dtype, device, iterations: int, seed: int):
    """The top k eigenpairs of the PSD matrix whose product with a (d, m) block is `product`:
    subspace iteration from 2k + 8 random vectors (drawn on the CPU: the same on every device),
    then Rayleigh-Ritz on the subspace found."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(d, min(d, 2 * k + 8), dtype=dtype, generator=generator).to(device)
    q = torch.linalg.qr(q)[0]
    for _ in range(iterations):
        q = torch.linalg.qr(product(q))[0]
    values, small = torch.linalg.eigh(q.T @ product(q))
    vectors = q @ small
    return values.flip(0)[:k], vectors.flip(1)[:, :k].T


def common_basis(moments: StreamingMoments, n_components: int) -> torch.Tensor:
    """Orthonormal rows spanning the mean direction and the top `n_components` PCs: (r, d), float32."""
    _, pcs = moments.principal(n_components)
    directions = torch.cat([moments.mean[None], pcs], dim=0)  # (1 + k, d)
    return orthonormal_rows(directions).float()


def orthonormal_rows(directions: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """An orthonormal basis (rows) of the span of `directions` (rows), dropping dependent ones."""
    q, r = torch.linalg.qr(directions.T.to(torch.float64))  # q: (d, m)
    keep = r.diagonal().abs() > tol * max(1.0, float(r.diagonal().abs().max()))
    return q[:, keep].T


def collapse(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove the span of `basis` (orthonormal rows, (r, d)) from every row of x (T, d)."""
    if basis.numel() == 0:
        return x
    basis = basis.to(x.dtype)
    return x - (x @ basis.T) @ basis


def soft_basis(moments: StreamingMoments, n_components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For the soft (Mahalanobis) collapse: top eigenvectors (r, d) of the uncentred second
    moment and the factor (r,) by which each is kept: lambda_min / lambda_i."""
    values, vectors = moments.principal(n_components, centred=False)
    values = values.clamp_min(1e-12)
    return vectors.float(), (values[-1] / values).float()


def soft_collapse(x: torch.Tensor, vectors: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Shrink each high-variance direction u_i of x by keep_i = lambda_min / lambda_i."""
    coefficients = x @ vectors.T.to(x.dtype)  # (T, r)
    return x - (coefficients * (1 - keep.to(x.dtype))) @ vectors.to(x.dtype)
