"""Root conftest: Hypothesis profiles, registered once.

`dev` for local runs, `ci` (deadline off, derandomized, so CI is reproducible on a noisy 2-core host).
Pick one with `--hypothesis-profile NAME` or `HYPOTHESIS_PROFILE`; CI=true selects `ci`.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
