"""Server workflows: the legacy FL loop as steps a ServerApp main composes."""

from stamen.compat.unsupported import unsupported_attributes

from .default_workflow import DefaultWorkflow
from .secagg_workflow import SecAggWorkflow
from .secaggplus_workflow import SecAggPlusWorkflow

__all__ = ["DefaultWorkflow", "SecAggPlusWorkflow", "SecAggWorkflow"]

__getattr__ = unsupported_attributes(__name__)
