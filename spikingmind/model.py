"""Decision Transformers for control: the spiking DT and its ANN twin on one skeleton.

Read top to bottom: LIF neuron -> spiking self-attention -> spiking block -> ANN block ->
the model that puts token embedding, blocks and action head together.

Both models take token windows (B, L, F) built by `spikingmind.tokens` and return action
outputs for every token (B, L, n_out); the DT loss reads them at the state tokens. The
spiking model runs `time_steps` SNN steps per decision on the token grid (tokens are a
spatial axis) and only uses operations NIR can express (docs/SEMANTICS.md): per-token
linear maps, BatchNorm (folded at export), LIF neurons, AND of two spike trains and a
decay-weighted causal sum over earlier tokens. No softmax, no LayerNorm in the spiking path.

Why one file over 500 lines: as nanoGPT's model.py, the whole network (both models, their
streaming state) reads top to bottom in one place; splitting it would scatter one forward pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from snntorch import surrogate

from spikingmind.errors import ConfigError, check_known_keys
from spikingmind.tokens import decision_token_index, window_length
from spikingmind.validation import check_fields, shown


HISTORIES = ("window", "stream")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture knobs shared by the spiking DT and its ANN twin (same width and depth)."""

    kind: str = "snn"  # "snn" or "ann"
    width: int = 64  # embedding channels C
    n_blocks: int = 2
    mlp_ratio: int = 2  # hidden channels = mlp_ratio * width
    context_length: int = 20  # K environment steps -> L = 3K tokens
    time_steps: int = 4  # T SNN steps per decision (snn only)
    beta: float = 0.5  # LIF decay per step; dyadic so NIR's tau round-trips exactly
    threshold: float = 1.0
    surrogate_slope: float = 2.0  # atan surrogate alpha
    mix_decay_init: tuple[float, float] = (0.5, 0.95)  # range of the per-channel causal decay g
    n_heads: int = 1  # ann only
    # "window": every decision recomputes the last K steps' 3K tokens; "stream": no window, the
    # history is carried as state and a decision computes only the tokens that arrived since the
    # last one (`DecisionTransformer.step`); K is then the training segment (SNN) or the
    # attention span (ANN twin: a key/value cache of the last 3K tokens). docs/SEMANTICS.md.
    history: str = "window"

    def __post_init__(self) -> None:
        check_fields(self, "", "model.")  # types first: 4.7, true, "4" and NaN never reach the ranges
        if self.kind not in ("snn", "ann"):
            raise ConfigError(f"model.kind must be 'snn' or 'ann', not {self.kind!r}")
        if self.history not in HISTORIES:
            raise ConfigError(f"model.history must be one of {', '.join(HISTORIES)}, not {self.history!r}")
        for name in ("width", "n_blocks", "mlp_ratio", "context_length", "time_steps", "n_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 < self.beta < 1.0:
            raise ConfigError(f"model.beta must be in (0, 1), got {self.beta!r}")
        for name in ("threshold", "surrogate_slope"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)!r}")
        if not all(0.0 < g < 1.0 for g in self.mix_decay_init):
            raise ConfigError(f"model.mix_decay_init must be two decays in (0, 1), got {list(self.mix_decay_init)!r}")
        if self.width % self.n_heads:
            raise ConfigError(f"model.width={self.width} is not divisible by n_heads={self.n_heads}")

    @classmethod
    def from_dict(cls, values: dict, source: str = "") -> "ModelConfig":
        """A ModelConfig from a config table or checkpoint.json; ConfigError naming `source`
        (the file) and the field."""
        prefix = f"{source}: " if source else ""
        if not isinstance(values, dict):
            raise ConfigError(f"{prefix}model must be a table, got {shown(values)}")
        check_known_keys(values, (f.name for f in fields(cls)), f"{prefix}unknown model config keys: {{keys}}")
        values = dict(values)
        if isinstance(values.get("mix_decay_init"), list):
            values["mix_decay_init"] = tuple(values["mix_decay_init"])
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{prefix}{error}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def n_tokens(self) -> int:
        """L, the tokens of a window: three per environment step (tokens.TokenLayout.n_tokens)."""
        return window_length(self.context_length)

    @property
    def streaming(self) -> bool:
        return self.history == "stream"


@dataclass
class Stream:
    """What a streaming model's forward pass carries besides the tokens.

    valid: (B, L) bool, the real tokens of a training segment (left padding is not: it must
    contribute nothing, as nothing precedes an episode's first token in deployment); None: all.
    state: the carried state per block, for the SNN the causal mix's trace (T*B, C) after the
    last token (None: an episode's start); filled with the state after this pass's last token.
    """

    valid: torch.Tensor | None = None
    state: list | None = None
    out: list = field(default_factory=list)

    def rows(self, time_steps: int) -> torch.Tensor | None:
        """The valid rows of a (T, B, L, C) tensor folded to (T*B*L, C), for BatchNorm statistics."""
        return None if self.valid is None else self.valid.expand(time_steps, *self.valid.shape).reshape(-1)


# ---------------------------------------------------------------------------- neuron


def lif_step(current: torch.Tensor, mem: torch.Tensor, beta: float, threshold: float, slope: float):
    """One LIF step, zero reset (docs/SEMANTICS.md): returns (spikes, membrane after reset).

    v = beta * v + I; s = v > threshold; v = 0 where s. Same dynamics as snntorch.Leaky with
    reset_mechanism="zero" (tests/test_model.py checks it step for step); the Heaviside uses
    snnTorch's atan surrogate gradient, the reset is detached as in snnTorch. Spikes have the
    membrane's dtype (snnTorch's Heaviside returns float32, which broke float64 models).
    """
    mem = beta * mem + current
    spikes = surrogate.ATan.apply(mem - threshold, slope).to(mem.dtype)
    return spikes, mem * (1.0 - spikes.detach())


def lif_no_grad(currents: torch.Tensor, beta: float, threshold: float) -> torch.Tensor:
    """The LIF layer's forward without autograd: currents (T, ...) -> spikes (T, ...).

    Bit for bit the values of the `lif_step` loop: it tracks keep = 1 - spikes, so a step is
    v = I + beta * v * keep (one addcmul; beta * v * 0 + I == I, beta * v * 1 == beta * v)
    and keep = v <= threshold (written straight into the float buffer). Two kernels per step
    instead of the surrogate Function's six (tests/test_model.py checks equality).
    """
    keep = torch.empty_like(currents)
    mem = currents[0]
    torch.le(mem, threshold, out=keep[0])
    for t in range(1, currents.shape[0]):
        mem = torch.addcmul(currents[t], mem, keep[t - 1], value=beta)
        torch.le(mem, threshold, out=keep[t])
    return keep.neg_().add_(1.0)


class LIF(nn.Module):
    """LIF layer over the SNN time axis: currents (T, ...) -> spikes (T, ...)."""

    def __init__(self, beta: float, threshold: float, slope: float):
        super().__init__()
        self.beta, self.threshold, self.slope = beta, threshold, slope

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        if not currents.requires_grad:  # inference (or frozen input): no surrogate graph to build
            return lif_no_grad(currents, self.beta, self.threshold)
        mem = torch.zeros_like(currents[0])
        spikes = []
        for current in currents:
            spike, mem = lif_step(current, mem, self.beta, self.threshold, self.slope)
            spikes.append(spike)
        return torch.stack(spikes)


class TokenLinear(nn.Module):
    """Per-token linear map with optional BatchNorm over channels: (..., L, C_in) -> (..., L, C_out).

    Exported as a kernel-1 Conv1d with the BatchNorm folded in.
    """

    def __init__(self, c_in: int, c_out: int, batch_norm: bool = True):
        super().__init__()
        self.linear = nn.Linear(c_in, c_out)
        self.norm = nn.BatchNorm1d(c_out) if batch_norm else None

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """`rows`: (N,) bool over the flattened tokens; only these feed the BatchNorm statistics."""
        y = self.linear(x)
        if self.norm is not None:
            y = normalize(self.norm, y.reshape(-1, y.shape[-1]), rows).reshape(y.shape)
        return y


def normalize(norm: nn.BatchNorm1d, y: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """norm(y) for y (N, C); in training with `rows` (N,) bool, the batch statistics (and the
    running ones) come from those rows alone and the other rows are 0 (padding, never read)."""
    if rows is None or not norm.training:
        return norm(y)
    out = torch.zeros_like(y)
    out[rows] = norm(y[rows])
    return out


# ---------------------------------------------------------------------------- spiking attention


class CausalDecayMix(nn.Module):
    """kv_i = sum_{j<=i} g_c^(i-j) x_j per channel c: a causal, decay-weighted sum over tokens.

    Exported as a Conv1d over the token axis with kernel 2L-1, padding L-1, a dense diagonal
    weight and zero taps for the future (so later tokens can never reach earlier ones).
    """

    def __init__(self, channels: int, n_tokens: int, decay_range: tuple[float, float]):
        super().__init__()
        self.n_tokens = n_tokens
        decay = torch.linspace(decay_range[0], decay_range[1], channels)
        self.decay_logit = nn.Parameter(torch.log(decay / (1 - decay)))
        self.norm = nn.BatchNorm1d(channels)
        self._cached_decay, self._cached_matrix = None, None  # eval-mode mixing matrix, not buffers

    def mixing_matrix(self) -> torch.Tensor:
        """(C, L, L) lower-triangular matrix M[c, i, j] = g_c^(i-j) for j <= i."""
        lag = torch.arange(self.n_tokens, device=self.decay_logit.device)
        lag = (lag[:, None] - lag[None, :]).to(self.decay_logit.dtype)  # (L, L) i - j
        causal = lag >= 0
        log_g = F.logsigmoid(self.decay_logit)[:, None, None]  # (C, 1, 1)
        return torch.where(causal, torch.exp(lag.clamp(min=0) * log_g), torch.zeros_like(log_g))

    def _inference_matrix(self) -> torch.Tensor:
        """mixing_matrix() cached while the decay parameter's values are unchanged (checked
        by value, so optimiser steps, load_state_dict and writes through `.data` all count)."""
        param = self.decay_logit.detach()
        snapshot = self._cached_decay
        if snapshot is None or snapshot.dtype != param.dtype or snapshot.device != param.device \
                or not torch.equal(snapshot, param):
            with torch.no_grad():
                self._cached_matrix = self.mixing_matrix()
            self._cached_decay = param.clone()
        return self._cached_matrix

    def train(self, mode: bool = True) -> "CausalDecayMix":
        self._cached_decay, self._cached_matrix = None, None
        return super().train(mode)

    def row(self, x: torch.Tensor, at: int) -> torch.Tensor:
        """forward(x)[..., at, :] alone: x (..., L, C) spikes -> (..., C) currents at token `at`."""
        matrix = self.mixing_matrix() if torch.is_grad_enabled() else self._inference_matrix()
        mixed = torch.einsum("...jc,cj->...c", x[..., : at + 1, :], matrix[:, at, : at + 1])
        return self.norm(mixed.reshape(-1, mixed.shape[-1])).reshape(mixed.shape)

    def scan(self, x: torch.Tensor, trace: torch.Tensor | None = None,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The mix as its recurrence, for any number of tokens: trace = g * trace + x_i.

        x (N, L, C) spikes, `trace` (N, C) the sum over earlier tokens (None: zero) -> (currents
        (N, L, C), the trace after the last token). A streaming model's mix: training over a
        segment and a deployment token by token run the same recurrence in the same order.
        """
        decay = torch.sigmoid(self.decay_logit)  # (C,)
        trace = torch.zeros_like(x[:, 0]) if trace is None else trace
        sums = []
        for i in range(x.shape[1]):
            trace = decay * trace + x[:, i]
            sums.append(trace)
        mixed = torch.stack(sums, dim=1)
        return normalize(self.norm, mixed.reshape(-1, mixed.shape[-1]), rows).reshape(mixed.shape), trace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, L, C) spikes -> (N, L, C) currents
        if self.training or (torch.is_grad_enabled() and self.decay_logit.requires_grad):
            mixed = torch.einsum("cij,njc->nic", self.mixing_matrix(), x)
        else:  # inference: cached matrix, and the bmm einsum picks minus its layout search (same values)
            mixed = torch.bmm(self._inference_matrix(), x.permute(2, 1, 0).contiguous()).permute(2, 1, 0)
        return self.norm(mixed.reshape(-1, mixed.shape[-1])).reshape(mixed.shape)


class SpikingSelfAttention(nn.Module):
    """Spike-driven causal attention: binary Q, K, V; AND(K, V) mixed causally; AND with Q."""

    def __init__(self, cfg: ModelConfig, n_tokens: int):
        super().__init__()
        c = cfg.width
        lif = lambda: LIF(cfg.beta, cfg.threshold, cfg.surrogate_slope)  # noqa: E731
        self.lif_in = lif()
        self.q, self.k, self.v = TokenLinear(c, c), TokenLinear(c, c), TokenLinear(c, c)
        self.q_lif, self.k_lif, self.v_lif = lif(), lif(), lif()
        self.mix = CausalDecayMix(c, n_tokens, cfg.mix_decay_init)
        self.kv_lif = lif()
        self.out_proj = TokenLinear(c, c)

    def forward(self, residual: torch.Tensor, record: dict | None, prefix: str, at: int | None = None,
                stream: Stream | None = None) -> torch.Tensor:
        """residual (T, B, L, C) real currents -> (T, B, L, C) residual contribution.

        With `at` (inference) only token `at`'s contribution is computed, (T, B, C): k and v
        still cover every token (the causal mix reads those up to `at`), q and everything
        after the mix only that token. Same values as forward()[:, :, at] (the same LIF steps
        on the same currents, up to the summation order of the one-row mix).
        With `stream` (a streaming model) the mix is its recurrence from the carried trace
        (`CausalDecayMix.scan`) and padding tokens reach neither the mix nor the statistics.
        """
        time_steps = residual.shape[0]
        fold = lambda t: t.reshape(-1, *t.shape[2:])  # noqa: E731  (T, B, ...) -> (T*B, ...)
        unfold = lambda t: t.reshape(time_steps, -1, *t.shape[1:])  # noqa: E731
        rows = None if stream is None else stream.rows(time_steps)
        s_in = self.lif_in(residual)
        q_current = unfold(self.q(fold(s_in), rows)) if at is None else self.q(s_in[:, :, at])
        currents = [q_current, unfold(self.k(fold(s_in), rows)), unfold(self.v(fold(s_in), rows))]
        lifs = (self.q_lif, self.k_lif, self.v_lif)
        beta, threshold = self.q_lif.beta, self.q_lif.threshold
        if currents[1].requires_grad or len({(n.beta, n.threshold) for n in lifs}) != 1:
            q, k, v = (lif(current) for lif, current in zip(lifs, currents))
        elif at is None:  # inference: the three identical LIF layers as one (elementwise: the same spikes)
            q, k, v = lif_no_grad(torch.stack(currents, dim=1), beta, threshold).unbind(1)
        else:  # q of one token, k and v of all
            q = lif_no_grad(currents[0], beta, threshold)
            k, v = lif_no_grad(torch.stack(currents[1:], dim=1), beta, threshold).unbind(1)
        kv_and = k * v  # AND of binary spikes (a threshold-1.5 neuron fed by both in NIR)
        if at is not None:
            return self.out_proj(q * self.kv_lif(self.mix.row(kv_and, at)))
        if stream is None:
            mixed = self.mix(fold(kv_and))
        else:
            into_mix = kv_and if stream.valid is None else kv_and * stream.valid[None, :, :, None]
            trace = None if stream.state is None else stream.state[len(stream.out)]
            mixed, trace = self.mix.scan(fold(into_mix), trace, rows)
            stream.out.append(trace)
        kv = self.kv_lif(unfold(mixed))
        qkv_and = q * kv
        if record is not None:
            names = ("lif_in", "q_lif", "k_lif", "v_lif", "kv_and", "kv_lif", "qkv_and")
            for name, spikes in zip(names, (s_in, q, k, v, kv_and, kv, qkv_and)):
                record[f"{prefix}.{name}"] = spikes
        return unfold(self.out_proj(fold(qkv_and), rows))


class SpikingMLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.width
        self.lif_in = LIF(cfg.beta, cfg.threshold, cfg.surrogate_slope)
        self.fc1 = TokenLinear(cfg.width, hidden)
        self.hidden_lif = LIF(cfg.beta, cfg.threshold, cfg.surrogate_slope)
        self.fc2 = TokenLinear(hidden, cfg.width)

    def forward(self, residual: torch.Tensor, record: dict | None, prefix: str,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        # residual (T, ..., C): every token (T, B, L, C) or one token (T, B, C)
        s_in = self.lif_in(residual)
        hidden = self.hidden_lif(self.fc1(s_in, rows))
        if record is not None:
            record[f"{prefix}.lif_in"] = s_in
            record[f"{prefix}.hidden_lif"] = hidden
        return self.fc2(hidden, rows)


class SpikingBlock(nn.Module):
    """Membrane-shortcut block: the residual stream stays real-valued (summed currents),
    each sublayer reads it through LIF spikes of its own."""

    def __init__(self, cfg: ModelConfig, n_tokens: int):
        super().__init__()
        self.attn = SpikingSelfAttention(cfg, n_tokens)
        self.mlp = SpikingMLP(cfg)

    def forward(self, residual: torch.Tensor, record: dict | None, prefix: str, at: int | None = None,
                stream: Stream | None = None) -> torch.Tensor:
        """(T, B, L, C) -> (T, B, L, C); with `at`, token `at` only: (T, B, C)."""
        attn = self.attn(residual, record, f"{prefix}.attn", at, stream)
        residual = (residual if at is None else residual[:, :, at]) + attn
        rows = None if stream is None else stream.rows(residual.shape[0])
        return residual + self.mlp(residual, record, f"{prefix}.mlp", rows)


# ---------------------------------------------------------------------------- ANN twin


class CausalSelfAttention(nn.Module):
    """Standard softmax causal self-attention (the ordinary Decision Transformer's)."""

    def __init__(self, cfg: ModelConfig, n_tokens: int):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.out_proj = nn.Linear(cfg.width, cfg.width)
        self.register_buffer("mask", torch.tril(torch.ones(n_tokens, n_tokens, dtype=torch.bool)), persistent=False)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, C); `allowed` (B, L, L) or (L, L) bool: which keys each query may read
        (default: the causal mask)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)
        heads = lambda t: t.reshape(b, n, self.n_heads, c // self.n_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)  # (B, H, L, C/H)
        scores = q @ k.transpose(-2, -1) / math.sqrt(c // self.n_heads)
        allowed = self.mask[:n, :n] if allowed is None else allowed
        scores = scores.masked_fill(~(allowed if allowed.dim() == 2 else allowed[:, None]), float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))

    def step(self, x: torch.Tensor, cache: "KVCache", last_only: bool = False) -> tuple[torch.Tensor, "KVCache"]:
        """New tokens x (B, n, C) against the cached keys and values of the tokens before them:
        forward() over (cache + new) for the new rows alone, each reading its band of `span`
        tokens. Returns (B, n, C), or (B, 1, C) for the last new token alone with `last_only`
        (every new token's key and value still enter the cache), and the cache of the last
        span - 1 tokens."""
        b, n, c = x.shape
        heads = lambda t: t.reshape(b, -1, self.n_heads, c // self.n_heads).transpose(1, 2)  # noqa: E731
        weight, bias = self.qkv.weight, self.qkv.bias
        queries = x[:, -1:] if last_only else x
        q = heads(F.linear(queries, weight[:c], bias[:c]))  # (B, H, n or 1, C/H)
        k, v = (heads(t) for t in F.linear(x, weight[c:], bias[c:]).split(c, dim=-1))  # (B, H, n, C/H)
        keys, values = torch.cat([cache.keys, k], dim=2), torch.cat([cache.values, v], dim=2)
        held = cache.valid.shape[1]
        valid = torch.cat([cache.valid, torch.ones(b, n, dtype=torch.bool)], dim=1)  # (B, held + n)
        position = torch.arange(held + n)
        query = position[held + n - queries.shape[1]:, None]  # (n or 1, 1) positions of the queries
        allowed = (position[None, :] <= query) & (position[None, :] > query - cache.span)
        allowed = allowed[None] & valid[:, None, :]  # (B, n or 1, held + n)
        scores = (q @ keys.transpose(-2, -1) / math.sqrt(c // self.n_heads)).masked_fill(~allowed[:, None],
                                                                                       float("-inf"))
        out = torch.softmax(scores, dim=-1) @ values
        keep = cache.span - 1
        next_cache = KVCache(keys[:, :, -keep:], values[:, :, -keep:], valid[:, -keep:], cache.span)
        return self.out_proj(out.transpose(1, 2).reshape(b, queries.shape[1], c)), next_cache

    def forward_at(self, x: torch.Tensor, at: int) -> torch.Tensor:
        """forward(x)[:, at] alone: the query of token `at` over the keys of tokens <= at; (B, C)."""
        b, _, c = x.shape
        weight, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, at], weight[:c], bias[:c])  # (B, C)
        k, v = F.linear(x[:, : at + 1], weight[c:], bias[c:]).split(c, dim=-1)  # (B, J, C)
        heads = lambda t: t.reshape(b, -1, self.n_heads, c // self.n_heads).transpose(1, 2)  # noqa: E731
        q, k, v = heads(q), heads(k), heads(v)  # (B, H, 1 or J, C/H)
        scores = q @ k.transpose(-2, -1) / math.sqrt(c // self.n_heads)
        out = torch.softmax(scores, dim=-1) @ v  # (B, H, 1, C/H)
        return self.out_proj(out.reshape(b, c))


@dataclass
class KVCache:
    """The keys and values (B, H, S, C/H) of the last S = span - 1 tokens of each episode, and
    which of them exist yet (B, S): the streaming ANN twin's carried state, per block."""

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor
    span: int

    @classmethod
    def empty(cls, batch: int, cfg: ModelConfig, dtype: torch.dtype) -> "KVCache":
        size = (batch, cfg.n_heads, cfg.n_tokens - 1, cfg.width // cfg.n_heads)
        return cls(torch.zeros(size, dtype=dtype), torch.zeros(size, dtype=dtype),
                   torch.zeros(batch, cfg.n_tokens - 1, dtype=torch.bool), cfg.n_tokens)

    def select(self, rows: torch.Tensor) -> "KVCache":
        return KVCache(self.keys[rows], self.values[rows], self.valid[rows], self.span)


def banded_causal_mask(valid: torch.Tensor | None, n: int, span: int) -> torch.Tensor:
    """(B, n, n) or (n, n): query i reads key j when j <= i, j > i - span and j is a real token;
    every query reads itself (a padding row then stays finite; no real row reads it)."""
    position = torch.arange(n)
    band = (position[None, :] <= position[:, None]) & (position[None, :] > position[:, None] - span)
    if valid is None:
        return band
    return (band[None] & valid[:, None, :]) | torch.eye(n, dtype=torch.bool)[None]


def timestep_embedding(timestep: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoids of the token's episode timestep feature t / max_episode_steps (B, L) -> (B, L, C):
    an absolute position, the same for a token whatever the window or cache it is seen in."""
    steps = timestep * 1000.0  # about one unit per environment step for episodes of up to 1000 steps
    # The frequencies are constants computed in float64: traced as a float32 constant, every runtime
    # multiplies by the same numbers. (Computed with torch.exp in the graph, one ulp of a runtime's exp
    # moves an angle of ~1000 rad by ~6e-5, and the sinusoids with it.)
    frequency = torch.tensor([math.exp(-math.log(10000.0) * i / width) for i in range(0, width, 2)],
                             dtype=timestep.dtype)
    angle = steps[..., None] * frequency
    out = torch.zeros(*timestep.shape, width, dtype=timestep.dtype)
    out[..., 0::2], out[..., 1::2] = torch.sin(angle), torch.cos(angle)[..., : width // 2]
    return out


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, n_tokens: int):
        super().__init__()
        hidden = cfg.mlp_ratio * cfg.width
        self.ln1, self.ln2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg, n_tokens)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(), nn.Linear(hidden, cfg.width))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), allowed)
        return x + self.mlp(self.ln2(x))

    def step(self, x: torch.Tensor, cache: KVCache, last_only: bool = False) -> tuple[torch.Tensor, KVCache]:
        """forward() of new tokens x (B, n, C) after the cached ones; (out, next cache). With
        `last_only`, out is the last new token's alone (B, 1, C): what the model's last block needs."""
        attn, cache = self.attn.step(self.ln1(x), cache, last_only)
        x = (x[:, -1:] if last_only else x) + attn
        return x + self.mlp(self.ln2(x)), cache

    def forward_at(self, x: torch.Tensor, at: int) -> torch.Tensor:
        """forward(x)[:, at] alone (B, C): later tokens cannot reach it, earlier ones only as keys."""
        y = x[:, at] + self.attn.forward_at(self.ln1(x[:, : at + 1]), at)
        return y + self.mlp(self.ln2(y))


# ---------------------------------------------------------------------------- the model


class DecisionTransformer(nn.Module):
    """Token embedding -> blocks -> action head, spiking (kind="snn") or not (kind="ann").

    forward(tokens (B, L, F)) -> outputs (B, L, n_out): action logits (discrete) or
    pre-squash action means (continuous) for every token; the policy reads the state tokens.
    A streaming model (history="stream") has no window: forward() runs any number of tokens
    of an episode from its start, and `step` continues it token by token from carried state.
    """

    def __init__(self, cfg: ModelConfig, n_features: int, n_out: int):
        super().__init__()
        self.cfg, self.n_features, self.n_out = cfg, n_features, n_out
        n_tokens = cfg.n_tokens
        self.decision_token = decision_token_index(n_tokens)
        self.embed = nn.Linear(n_features, cfg.width)  # real-valued encoder (MACs, not spike ops)
        if cfg.kind == "snn":
            self.blocks = nn.ModuleList(SpikingBlock(cfg, n_tokens) for _ in range(cfg.n_blocks))
            self.head_lif = LIF(cfg.beta, cfg.threshold, cfg.surrogate_slope)
        else:
            if not cfg.streaming:  # a window-position embedding; a streaming twin embeds the episode timestep
                self.position = nn.Parameter(torch.zeros(n_tokens, cfg.width))
                nn.init.normal_(self.position, std=0.02)
            self.blocks = nn.ModuleList(TransformerBlock(cfg, n_tokens) for _ in range(cfg.n_blocks))
            self.head_norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, n_out)

    @property
    def spiking(self) -> bool:
        return self.cfg.kind == "snn"

    def _ann_input(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (B, L, C)
        if self.cfg.streaming:  # the timestep feature is the token's last channel (tokens.TokenLayout.time_channel)
            return x + timestep_embedding(tokens[..., -1], self.cfg.width)
        return x + self.position[: x.shape[1]]

    def forward(self, tokens: torch.Tensor, record: dict | None = None,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, L, F) -> (B, L, n_out). With `record` (a dict) the SNN stores every
        spiking layer's spikes (T, B, L, C) under its NIR node name. `valid` (B, L) bool, for a
        streaming model: the real tokens of each row (left padding reaches no real token)."""
        if not self.spiking:
            x = self._ann_input(tokens)
            allowed = banded_causal_mask(valid, x.shape[1], self.cfg.n_tokens) if self.cfg.streaming else None
            for block in self.blocks:
                x = block(x, allowed)
            return self.head(self.head_norm(x))
        stream = Stream(valid=valid) if self.cfg.streaming else None
        return self._spiking(self.embed(tokens), record, stream)

    def _spiking(self, x: torch.Tensor, record: dict | None, stream: Stream | None) -> torch.Tensor:
        residual = x.unsqueeze(0).expand(self.cfg.time_steps, *x.shape)  # (T, B, L, C) same input each step
        for index, block in enumerate(self.blocks):
            residual = block(residual, record, f"blocks.{index}", stream=stream)
        spikes = self.head_lif(residual)
        if record is not None:
            record["head.lif"] = spikes
        return self.head(spikes).mean(dim=0)  # readout averaged over the T steps

    def decide(self, tokens: torch.Tensor) -> torch.Tensor:
        """forward(tokens)[:, decision_token] at a fraction of the cost: (B, L, F) -> (B, n_out).

        What a closed-loop policy needs. The last block only computes what the decision
        token's output reads (every block before it still runs on all tokens, whose keys and
        values the decision token attends to). Inference only; tests/test_model.py checks it
        against forward(). Spikes are not recorded here: use forward(record=...) for counts.
        A streaming model decides with `step` instead.
        """
        if self.cfg.streaming:
            raise ValueError("a streaming model has no window to decide on: use step() with its carried state")
        at = self.decision_token
        x = self.embed(tokens)
        *earlier, last = self.blocks
        if not self.spiking:
            x = x + self.position[: x.shape[1]]
            for block in earlier:
                x = block(x)
            return self.head(self.head_norm(last.forward_at(x, at)))
        residual = x.unsqueeze(0).expand(self.cfg.time_steps, *x.shape)
        for index, block in enumerate(earlier):
            residual = block(residual, None, f"blocks.{index}")
        residual = last(residual, None, f"blocks.{len(earlier)}", at=at)  # (T, B, C)
        return self.head(self.head_lif(residual)).mean(dim=0)

    # ------------------------------------------------------------------ streaming

    def initial_state(self, batch: int) -> list:
        """The carried state at an episode's start, per block: the SNN's mix trace (T, B, C) of
        zeros, the ANN twin's empty key/value cache."""
        if not self.cfg.streaming:
            raise ValueError("only a streaming model (model.history = 'stream') carries state")
        dtype = self.embed.weight.dtype
        if self.spiking:
            return [torch.zeros(self.cfg.time_steps, batch, self.cfg.width, dtype=dtype) for _ in self.blocks]
        return [KVCache.empty(batch, self.cfg, dtype) for _ in self.blocks]

    def step(self, tokens: torch.Tensor, state: list, record: dict | None = None) -> tuple[torch.Tensor, list]:
        """The tokens that arrived since the last call (B, n, F) (the previous action, the new
        return-to-go and state; an episode's first call has no action) after the `state` they
        left: (outputs of the last token (B, n_out), the state after it). Equals forward() of the
        whole episode so far at its last token (tests/test_streaming.py)."""
        if not self.spiking:
            x = self._ann_input(tokens)
            caches = []
            for index, (block, cache) in enumerate(zip(self.blocks, state)):
                x, cache = block.step(x, cache, last_only=index == len(self.blocks) - 1)  # the decision's row only
                caches.append(cache)
            return self.head(self.head_norm(x[:, -1])), caches
        time_steps, batch = self.cfg.time_steps, tokens.shape[0]
        stream = Stream(state=[trace.reshape(time_steps * batch, -1) for trace in state])
        outputs = self._spiking(self.embed(tokens), record, stream)
        return outputs[:, -1], [trace.reshape(time_steps, batch, -1) for trace in stream.out]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
