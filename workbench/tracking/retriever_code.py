"""The model-from-code file MLflow copies into a registered retrieval model (see ``registry.py``)."""

from mlflow.models import set_model

from workbench.tracking.pyfunc_model import RetrievalModel

set_model(RetrievalModel())
