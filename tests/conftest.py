"""Hypothesis profiles: the default keeps the plain test run quick; `--hypothesis-profile thorough`
draws many more problems (minutes)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=1000)
settings.load_profile("default")
