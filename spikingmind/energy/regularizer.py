"""Energy-aware training: the spike-driven energy of a forward pass, differentiable.

`energy-report` prices every spike of a spiking layer as: its routing (the profile's
`spike_routing`, where priced) plus, for every synapse it drives, one synaptic accumulate
(`ac`) and, into a weighted layer, one weight read (`weight_read`; 0 on Loihi, whose
synaptic-op energy includes the memory access). `SpikeEnergy` holds that price per spike
for every (token, channel) of every spiking layer of a spiking DT, computed from the
model's own weights (nonzero fan-out after BatchNorm folding) and a hardware profile, so
no constant lives twice. `spike_energy(record, table)` sums it over the spikes a forward
pass recorded (`DecisionTransformer(tokens, record)`): the spike-driven energy of the full
window, exactly what the report's `snn_spike_driven_pj` is for the same spikes, and
differentiable through the surrogate gradient of every spike.

Neuron updates are the rest of the SNN's energy: one per neuron and step whatever the
spikes, so they carry no gradient and stay out of the loss (the report prices them).

The loss term is `spike_energy / table.max_pj`: the share of the energy the layers would
cost if every neuron fired at every step, a number in [0, 1] whatever the model's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikingmind.energy.profiles import HardwareProfile


@dataclass(frozen=True)
class SpikeEnergy:
    """pJ per spike of each recorded spiking layer, (L, C) per record key (layout (T, B, L, C))."""

    per_spike: dict[str, torch.Tensor]
    time_steps: int
    profile: str

    @property
    def max_pj(self) -> float:
        """Spike-driven energy of one decision (the full window) if every neuron fired every step."""
        return float(sum(table.sum() for table in self.per_spike.values())) * self.time_steps


def _nonzero_columns(*modules) -> torch.Tensor:
    """Nonzero weights per input channel of per-token linear maps with their BatchNorm folded: (C_in,)."""
    total = 0
    for module in modules:
        linear = getattr(module, "linear", module)
        weight = linear.weight.detach()
        norm = getattr(module, "norm", None)
        if norm is not None:  # folding multiplies row o by gamma_o / sqrt(var_o + eps)
            scale = norm.weight.detach() / torch.sqrt(norm.running_var.detach() + norm.eps)
            weight = weight * scale[:, None]
        total = total + (weight != 0).sum(dim=0)
    return total.to(torch.float64)


def _weight_count(*modules) -> int:
    return sum(getattr(m, "linear", m).weight.numel() for m in modules)


def spike_energy_table(model, profile: HardwareProfile) -> SpikeEnergy:
    """Per-spike energies of a spiking DT's layers under `profile` (the counting rules of
    `spikingmind.energy.snn_counts` on the model's NIR graph, read off the model itself)."""
    if not model.spiking:
        raise ValueError("the spike energy of the ANN twin is not defined: it has no spikes")
    ac = profile.price("ac").pj
    routing_price = profile.price("spike_routing")
    routing = routing_price.pj if routing_price is not None else 0.0
    n_tokens, width = 3 * model.cfg.context_length, model.cfg.width
    linears = [m for block in model.blocks for m in (block.attn.q, block.attn.k, block.attn.v, block.attn.out_proj,
                                                     block.mlp.fc1, block.mlp.fc2)]
    mix_weights = sum(width * width * (2 * n_tokens - 1) for _ in model.blocks)  # the exported causal Conv1d
    # the weights the chip holds, as `report.price_snn` sizes them: without a MAC of its own the
    # chip takes the spike-driven layers and a host the encoder; otherwise it holds them all
    weights = _weight_count(*linears, model.head) + mix_weights
    if profile.accounting.mac is not None:
        weights += _weight_count(model.embed)
    read_price = profile.price("weight_read", weights * profile.accounting.weight_bits / 8)
    synapse = ac + (read_price.pj if read_price is not None else 0.0)  # into a weighted layer
    identity = ac  # into an AND gate (an unweighted edge)

    def per_channel(fanout: torch.Tensor, price: float) -> torch.Tensor:  # (C,) -> (L, C)
        return (routing + price * fanout).expand(n_tokens, -1).clone()

    ones = torch.ones(width, dtype=torch.float64)
    table: dict[str, torch.Tensor] = {}
    for index, block in enumerate(model.blocks):
        attn, mlp, prefix = block.attn, block.mlp, f"blocks.{index}"
        table[f"{prefix}.attn.lif_in"] = per_channel(_nonzero_columns(attn.q, attn.k, attn.v), synapse)
        for name in ("q_lif", "k_lif", "v_lif", "kv_lif"):  # each feeds one AND gate
            table[f"{prefix}.attn.{name}"] = per_channel(ones, identity)
        with torch.no_grad():  # the mix: spike j of channel c reaches every later token i with a nonzero tap
            matrix = attn.mix.mixing_matrix().double()  # (C, L, L): [c, i, j]
            norm = attn.mix.norm
            scale = (norm.weight.detach() / torch.sqrt(norm.running_var.detach() + norm.eps)).double()
            reach = ((matrix * scale[:, None, None]) != 0).sum(dim=1).T  # (L, C): outputs i per input j
        table[f"{prefix}.attn.kv_and"] = routing + synapse * reach.to(torch.float64)
        table[f"{prefix}.attn.qkv_and"] = per_channel(_nonzero_columns(attn.out_proj), synapse)
        table[f"{prefix}.mlp.lif_in"] = per_channel(_nonzero_columns(mlp.fc1), synapse)
        table[f"{prefix}.mlp.hidden_lif"] = per_channel(_nonzero_columns(mlp.fc2), synapse)
    table["head.lif"] = per_channel(_nonzero_columns(model.head), synapse)
    return SpikeEnergy(per_spike=table, time_steps=model.cfg.time_steps, profile=profile.name)


def spike_energy(record: dict[str, torch.Tensor], table: SpikeEnergy) -> torch.Tensor:
    """Spike-driven energy (pJ) per decision of the spikes in `record` ((T, B, L, C) per layer),
    averaged over the batch; differentiable where the spikes are (the surrogate gradient)."""
    missing = set(table.per_spike) - set(record)
    if missing:
        raise KeyError(f"the forward pass recorded no spikes of {sorted(missing)}")
    total = None
    for name, price in table.per_spike.items():
        spikes = record[name]  # (T, B, L, C)
        term = (spikes.sum(dim=0) * price.to(spikes.dtype)).sum() / spikes.shape[1]
        total = term if total is None else total + term
    return total


def layer_spike_rates(record: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean spike rate of each recorded layer, (n_layers,), differentiable."""
    return torch.stack([spikes.mean() for spikes in record.values()])
