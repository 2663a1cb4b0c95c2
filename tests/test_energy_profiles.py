"""Hardware profiles: bundled constants match the cited figures; bad files fail naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spikingmind.energy.profiles import list_profiles, load_profile
from spikingmind.errors import ProfileError

GOOD = """
[profile]
name = "toy"

[constants.add]
value = 1.0
unit = "pJ"
source = "Some et al. 2020"
where = "Table 1"

[constants.multiply]
value = 2.0
unit = "pJ"
source = "Some et al. 2020"
where = "Table 1"

[constants.mac]
value = 3.0
unit = "pJ"
source = "Some et al. 2020"
where = "Table 1"

[constants.sram]
value = {sram}
unit = "{unit}"
source = "Some et al. 2020"
where = "Table 2"

[accounting]
ac = "add"
mac = "mac"
add = "add"
multiply = "multiply"
neuron_update = "mac"
weight_memory = "sram"
state_memory = "sram"
activation_memory = "sram"
weight_bits = 16
"""


def write(tmp_path: Path, text: str, name: str = "toy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_bundled_profiles_are_listed_and_load():
    assert list_profiles() == ["cmos45nm-fp32", "cmos45nm-int8", "loihi", "loihi-kerasspiking", "loihi-sanafe"]
    for name in list_profiles():
        profile = load_profile(name)
        assert profile.name == name
        for const in profile.constants.values():
            assert const.source and const.where


@pytest.mark.parametrize(
    "name, key, pj",
    [
        ("cmos45nm-fp32", "mac", 4.6),
        ("cmos45nm-fp32", "ac", 0.9),
        ("cmos45nm-fp32", "sram_1mb_read", 100.0),
        ("cmos45nm-fp32", "dram_read", 1300.0),  # given in nJ, reported in pJ
        ("cmos45nm-int8", "mac", 0.23),
        ("cmos45nm-int8", "ac", 0.03),
        ("cmos45nm-int8", "sram_8kb_read", 10.0),
        ("loihi", "synaptic_op", 23.6),
        ("loihi", "neuron_update_active", 81.0),
        ("loihi", "neuron_update_inactive", 52.0),
        ("loihi", "spike_within_tile", 1.7),
        ("loihi-sanafe", "synaptic_op", 35.5),  # SANA-FE arch/loihi.yaml, dense synapse
        ("loihi-sanafe", "neuron_access", 51.2),
        ("loihi-sanafe", "neuron_update_active", 51.2 + 21.6),
        ("loihi-sanafe", "spike_routing", 69.3 + 111.0),
        ("loihi-kerasspiking", "synaptic_op", 23.6 + 3.5),  # keras_spiking/model_energy.py
        ("loihi-kerasspiking", "neuron_update", 81.0),
    ],
)
def test_bundled_constants_match_the_sources(name, key, pj):
    assert load_profile(name).constant(key).pj == pytest.approx(pj)


def test_bundled_sources_name_the_papers():
    assert "Davies" in load_profile("loihi").constant("synaptic_op").source
    assert "Table 2" in load_profile("loihi").constant("synaptic_op").where
    assert "Horowitz" in load_profile("cmos45nm-int8").constant("mac").source
    assert "SANA-FE" in load_profile("loihi-sanafe").constant("synaptic_op").source
    assert "8951ab0" in load_profile("loihi-sanafe").constant("synaptic_op").source  # the commit read
    assert "keras_spiking/model_energy.py" in load_profile("loihi-kerasspiking").constant("neuron_update").source


def test_every_loihi_profile_names_its_technology_node():
    for name in ("loihi", "loihi-sanafe", "loihi-kerasspiking"):
        assert load_profile(name).technology == "14 nm (Loihi)"
    assert load_profile("cmos45nm-int8").technology.startswith("45 nm")


def test_memory_price_packs_values_into_64_bit_words():
    fp32, int8 = load_profile("cmos45nm-fp32"), load_profile("cmos45nm-int8")
    assert fp32.price("weight_read", 400_000).pj == pytest.approx(100.0 * 32 / 64)  # 1 MB array
    assert int8.price("weight_read", 100_000).pj == pytest.approx(100.0 * 8 / 64)
    assert int8.price("state_write").pj == pytest.approx(10.0 * 8 / 64)


def test_loihi_has_no_mac_and_names_its_host():
    loihi = load_profile("loihi")
    assert loihi.price("mac") is None
    assert loihi.price("weight_read").pj == 0.0  # included in the measured synaptic op
    assert loihi.mac_host().name == "cmos45nm-fp32"


def test_load_by_path_and_units(tmp_path):
    profile = load_profile(write(tmp_path, GOOD.format(sram=0.064, unit="nJ")))
    assert profile.constant("sram").pj == pytest.approx(64.0)
    assert profile.price("weight_read").pj == pytest.approx(64.0 * 16 / 64)


def test_unknown_name_lists_known_profiles():
    with pytest.raises(ProfileError, match="unknown hardware profile 'truenorth'.*cmos45nm-fp32.*loihi"):
        load_profile("truenorth")


def test_missing_file_is_a_profile_error(tmp_path):
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('where = "Table 2"\n', ""), r"constants\.sram: missing 'where'"),
        (lambda t: t.replace('source = "Some et al. 2020"\nwhere = "Table 2"', 'where = "Table 2"'),
         r"constants\.sram: missing 'source'"),
        (lambda t: t.replace('source = "Some et al. 2020"\nwhere = "Table 2"', 'source = " "\nwhere = "Table 2"'),
         r"constants\.sram: missing citation field 'source'"),
        (lambda t: t.replace('unit = "pJ"\nsource = "Some et al. 2020"\nwhere = "Table 2"',
                             'unit = "kWh"\nsource = "Some et al. 2020"\nwhere = "Table 2"'),
         r"constants\.sram: unknown unit 'kWh'"),
        (lambda t: t.replace("value = 10.0", "value = -10.0"), r"constants\.sram: value must be a finite non-negative"),
        (lambda t: t.replace("value = 10.0", 'value = "10"'), r"constants\.sram: value must be a number"),
        (lambda t: t.replace("value = 10.0", "value = true"), r"constants\.sram: value must be a number"),
        (lambda t: t.replace("value = 3.0", "value = 3.5"), r"constants\.mac: .* is not multiply \+ add"),
        (lambda t: t.replace('weight_memory = "sram"', 'weight_memory = "dram"'),
         r"accounting\.weight_memory: names constant 'dram'"),
        (lambda t: t.replace("weight_bits = 16", "weight_bits = 0"), r"accounting\.weight_bits: must be a positive"),
        (lambda t: t.replace("weight_bits = 16", "colour = 1"), r"accounting: unknown key\(s\) colour"),
        (lambda t: t.replace('ac = "add"\n', ""), r"accounting\.ac"),
        (lambda t: t + "\n[constants.bad]\nvalue = 1\n", r"constants\.bad: missing 'unit'"),
        (lambda t: t.replace("[accounting]", "[accounting\n"), r"cannot read TOML"),
    ],
)
def test_invalid_profile_names_file_and_key(tmp_path, edit, message):
    path = write(tmp_path, edit(GOOD.format(sram=10.0, unit="pJ")))
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_profiles_command_lists_constants_and_sources(tmp_path):
    from spikingmind.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["profiles"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in ("loihi", "cmos45nm-fp32", "cmos45nm-int8", "23.6 pJ", "Davies", "Horowitz", "0.23 pJ"):
        assert text in result.output

    out = tmp_path / "profiles.json"
    result = runner.invoke(app, ["profiles", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["loihi"]["constants"]["synaptic_op"]["pJ"] == pytest.approx(23.6)
    assert data["cmos45nm-fp32"]["accounting"]["weight_memory"] == "by_footprint"
    assert data["cmos45nm-fp32"]["accounting"]["memory_arrays"]["sram_1mb_read"] == 1048576

    before = out.read_bytes()
    result = runner.invoke(app, ["profiles", "--json", str(out)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert out.read_bytes() == before
    assert runner.invoke(app, ["profiles", "--json", str(out), "--force"]).exit_code == 0
