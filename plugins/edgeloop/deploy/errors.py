"""Errors of the deployment build (all subclasses of :class:`DeployError`)."""

from __future__ import annotations

from edgeloop.errors import DeployError


class UnsupportedOperatorError(DeployError):
    """The converted graph holds an operator the code generator has no kernel for."""

    def __init__(self, op_name: str, op_index: int, supported: tuple[str, ...], detail: str = ""):
        self.op_name = op_name
        self.op_index = op_index
        what = f"unsupported operator {op_name} (op #{op_index})"
        if detail:
            what += f": {detail}"
        super().__init__(f"{what}; supported operators: {', '.join(supported)}")


class VerificationError(DeployError):
    """The compiled library disagrees with the reference interpreter."""

    def __init__(self, message: str, *, sample: int | None = None, op: str | None = None):
        self.sample = sample
        self.op = op
        super().__init__(message)
