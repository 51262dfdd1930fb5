"""The collapse removes exactly the intended subspace; statistics stream in constant memory."""

from __future__ import annotations

import torch

from cir.methods.collapse import StreamingMoments, collapse, common_basis, orthonormal_rows, soft_basis, soft_collapse


def svd_projector(directions: torch.Tensor) -> torch.Tensor:
    """Orthogonal projector onto the span of `directions` (rows), from torch.linalg.svd."""
    u, s, _ = torch.linalg.svd(directions.T.double(), full_matrices=False)
    u = u[:, s > 1e-10 * s.max()]
    return u @ u.T


def test_collapse_removes_exactly_the_span():
    torch.manual_seed(0)
    d = 32
    directions = torch.randn(5, d, dtype=torch.float64)
    x = torch.randn(100, d, dtype=torch.float64)
    out = collapse(x, orthonormal_rows(directions))
    projector = svd_projector(directions)
    torch.testing.assert_close(out, x - x @ projector)  # exactly the complement
    assert (out @ directions.T).abs().max() < 1e-10  # nothing left along any direction
    torch.testing.assert_close(out @ (torch.eye(d, dtype=torch.float64) - projector), out)  # rest untouched


def test_common_basis_is_mean_plus_top_components():
    torch.manual_seed(0)
    d, k = 24, 3
    mean = torch.randn(d, dtype=torch.float64) * 3
    loadings = torch.linalg.qr(torch.randn(d, k, dtype=torch.float64))[0].T  # orthonormal (k, d)
    x = mean + (torch.randn(2000, k, dtype=torch.float64) * torch.tensor([10.0, 7.0, 5.0])) @ loadings \
        + 0.01 * torch.randn(2000, d, dtype=torch.float64)
    moments = StreamingMoments(d)
    for chunk in x.split(128):
        moments.update(chunk)
    basis = common_basis(moments, k).double()
    assert basis.shape == (k + 1, d)
    torch.testing.assert_close(basis @ basis.T, torch.eye(k + 1, dtype=torch.float64), atol=1e-5, rtol=0)
    expected = svd_projector(torch.cat([x.mean(0)[None], loadings]))
    torch.testing.assert_close(basis.T @ basis, expected, atol=1e-3, rtol=0)
    residual = collapse(x, basis)
    assert residual.norm() / x.norm() < 0.01  # only the small isotropic noise is left


def test_streaming_moments_match_full_covariance_and_stay_constant_size():
    torch.manual_seed(0)
    x = torch.randn(1000, 16, dtype=torch.float64) * torch.linspace(0.5, 3, 16) + 2
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        moments = StreamingMoments(16, dtype=dtype)
        for chunk in x.split(77):
            moments.update(chunk)
        torch.testing.assert_close(moments.mean, x.mean(0), atol=tolerance, rtol=tolerance)
        torch.testing.assert_close(moments.covariance(), torch.cov(x.T, correction=0), atol=tolerance * 10,
                                   rtol=tolerance)
        assert moments.outer.shape == (16, 16)  # independent of the number of tokens


def test_soft_collapse_shrinks_by_eigenvalue_ratio():
    torch.manual_seed(0)
    scales = torch.tensor([8.0, 4.0, 2.0, 1.0])
    x = torch.randn(5000, 4, dtype=torch.float64) * scales
    moments = StreamingMoments(4)
    moments.update(x)
    vectors, keep = soft_basis(moments, 4)
    out = soft_collapse(x.float(), vectors, keep).double()
    ratio = out.std(0) / x.std(0)
    # variance lambda_i shrinks by lambda_min / lambda_i, so the std ratio is ~ 1/scale^2 (scaled)
    expected = (scales[-1] / scales) ** 2
    torch.testing.assert_close(ratio, expected.double(), atol=0.05, rtol=0.1)


def planted(n: int, d: int, rank: int = 6, seed: int = 0) -> torch.Tensor:
    """n rows in d dimensions: a mean, `rank` strong directions of decreasing scale, and noise."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.linalg.qr(torch.randn(d, rank, generator=generator))[0].T  # (rank, d)
    scales = torch.linspace(10, 3, rank)
    coefficients = torch.randn(n, rank, generator=generator) * scales
    return 2 + coefficients @ directions + 0.1 * torch.randn(n, d, generator=generator)


def projector(basis: torch.Tensor) -> torch.Tensor:
    return basis.double().T @ basis.double()


def test_rows_give_the_subspace_of_the_covariance():
    """Kept as rows (fewer than d) and decomposed by a randomized SVD, the statistics span the
    same mean-plus-components subspace as the d x d sums, for the paper's collapse and the soft one."""
    from cir.methods.collapse import RowMoments

    d = 1536  # wider than top_components' exact threshold: both sides randomized
    x = planted(300, d)
    full, rows = StreamingMoments(d), RowMoments(d)
    for chunk in x.split(64):
        full.update(chunk)
        rows.update(chunk)
    assert rows.outer is None and sum(r.shape[0] for r in rows.rows) == 300  # 300 x d numbers, not d x d
    k = 6
    difference = projector(common_basis(rows, k)) - projector(common_basis(full, k))
    assert torch.linalg.matrix_norm(difference, ord=2) < 1e-4
    (vectors, keep), (full_vectors, full_keep) = soft_basis(rows, 4), soft_basis(full, 4)
    assert torch.linalg.matrix_norm(projector(vectors) - projector(full_vectors), ord=2) < 1e-4
    torch.testing.assert_close(keep, full_keep, rtol=1e-4, atol=1e-6)


def test_rows_past_the_width_fold_into_the_covariance():
    from cir.methods.collapse import RowMoments

    d = 48
    x = planted(200, d)
    full, rows = StreamingMoments(d), RowMoments(d)
    for chunk in x.split(30):
        full.update(chunk)
        rows.update(chunk)
    assert rows.rows == [] and rows.outer is not None  # folded once the rows outnumbered d
    torch.testing.assert_close(rows.covariance(), full.covariance(), rtol=1e-5, atol=1e-5)
    assert rows.count == full.count == 200
