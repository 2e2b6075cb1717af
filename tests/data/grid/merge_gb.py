"""Rebuild gb-2023-04-10-to-2023-04-17.csv from gb-2023-04-pt24h-responses.txt.

Each half hour takes its figures from the latest response that has an actual for it: the API
revises recent actuals for a few hours, so the latest is the settled one. Run from anywhere:
python tests/data/grid/merge_gb.py
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent
START = datetime(2023, 4, 10, 23, 0, tzinfo=UTC)
SLOTS = 336  # seven days of half hours
STEP = timedelta(minutes=30)


def main() -> None:
    slots: dict[datetime, tuple[int, int]] = {}
    revised = 0
    for line in (HERE / "gb-2023-04-pt24h-responses.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        first, *pairs = line.split()
        when = datetime.fromisoformat(first).replace(tzinfo=UTC)
        for pair in pairs:
            forecast, actual = pair.split("/")
            if actual != "-":
                old = slots.get(when)
                if old is not None and old != (int(forecast), int(actual)):
                    revised += 1
                slots[when] = (int(forecast), int(actual))
            when += STEP
    rows = ["timestamp,forecast_g_per_kwh,actual_g_per_kwh"]
    for i in range(SLOTS):
        when = START + i * STEP
        forecast, actual = slots[when]  # KeyError: a half hour no response settled
        rows.append(f"{when.strftime('%Y-%m-%dT%H:%M:%SZ')},{forecast},{actual}")
    (HERE / "gb-2023-04-10-to-2023-04-17.csv").write_text("\n".join(rows) + "\n")
    print(f"{SLOTS} half hours; {revised} later responses revised an earlier figure")


if __name__ == "__main__":
    main()
