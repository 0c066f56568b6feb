"""Auto Scaling: corrections to moto's UpdateAutoScalingGroup (moto 5.2.5)."""

from __future__ import annotations

from typing import Any

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import FakeAutoScalingGroup

from sandbox.moto_fixes._guard import require


def apply() -> None:
    _update_validates_bounds_and_keeps_what_is_omitted()


def _update_validates_bounds_and_keeps_what_is_omitted() -> None:
    """moto 5.2.5 accepts a desired capacity outside [min, max] (AWS answers ValidationError), and an update that omits
    MixedInstancesPolicy drops the group's policy (AWS keeps every setting the request leaves out)."""
    # The keyword arguments read and passed on below must still be moto's names for them.
    original = require(FakeAutoScalingGroup, "update", "desired_capacity", "max_size", "min_size",
                       "mixed_instances_policy")

    def update(self: Any, *args: Any, **kwargs: Any) -> None:
        desired, max_size, min_size = (kwargs.get(k) for k in ("desired_capacity", "max_size", "min_size"))
        new_min = self.min_size if min_size is None else int(min_size)
        new_max = self.max_size if max_size is None else int(max_size)
        if new_min > new_max:
            raise ValidationError(f"Max bound, {new_max}, must be greater than or equal to min bound, {new_min}")
        if desired is not None and not new_min <= int(desired) <= new_max:
            raise ValidationError(f"Desired capacity:{desired} must be between the specified min size:{new_min} "
                                  f"and max size:{new_max}")
        if kwargs.get("mixed_instances_policy") is None:
            kwargs["mixed_instances_policy"] = self.mixed_instances_policy
        original(self, *args, **kwargs)

    FakeAutoScalingGroup.update = update  # type: ignore[method-assign]
