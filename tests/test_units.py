"""Every unit conversion against a figure computed by hand."""

from __future__ import annotations

import pytest

from co2gate import units
from co2gate.emissions import scale_to_lifetime


def test_millijoules_to_kwh() -> None:
    # 7,200,000 mJ = 7,200 J; 1 kWh = 3,600,000 J -> 0.002 kWh
    assert units.mj_to_kwh(7_200_000) == pytest.approx(0.002, rel=1e-12)


def test_milliwatts_to_watts() -> None:
    assert units.mw_to_w(312_500) == pytest.approx(312.5, rel=1e-12)


def test_watts_times_seconds_to_kwh() -> None:
    # 300 W for 1 hour (3,600 s) is 0.3 kWh; for 90 s it is 300 * 90 / 3.6e6 = 0.0075 kWh
    assert units.watt_seconds_to_kwh(300, 3600) == pytest.approx(0.3, rel=1e-12)
    assert units.watt_seconds_to_kwh(300, 90) == pytest.approx(0.0075, rel=1e-12)


def test_kwh_to_mean_power() -> None:
    # 0.0075 kWh over 90 s: 0.0075 * 3.6e6 J / 90 s = 300 W
    assert units.kwh_to_mean_w(0.0075, 90) == pytest.approx(300, rel=1e-12)
    assert units.kwh_to_mean_w(1.0, 0) == 0.0


def test_emissions_with_pue_and_intensity() -> None:
    # 0.0316 kWh x PUE 1.1 x 244.8 g/kWh = 8.509248 g = 0.008509248 kg
    assert units.emissions_kg(0.0316, 1.1, 244.8) == pytest.approx(0.008509248, rel=1e-12)
    # PUE 1 leaves energy as drawn: 2 kWh x 400 g/kWh = 800 g = 0.8 kg
    assert units.emissions_kg(2.0, 1.0, 400.0) == pytest.approx(0.8, rel=1e-12)


def test_scale_to_lifetime() -> None:
    # a source that watched 8 s of a 10 s run and saw 0.004 kWh: 0.004 * 10 / 8 = 0.005 kWh
    assert scale_to_lifetime(0.004, 8.0, 10.0) == pytest.approx(0.005, rel=1e-12)
    assert scale_to_lifetime(0.004, 0.0, 10.0) == 0.0
