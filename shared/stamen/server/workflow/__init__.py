"""Server workflows: the legacy FL loop as steps a ServerApp main composes."""

from stamen.compat.unsupported import unsupported_attributes

from .default_workflow import DefaultWorkflow

__all__ = ["DefaultWorkflow"]

__getattr__ = unsupported_attributes(__name__)
