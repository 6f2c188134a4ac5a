"""MLflow 3's model logging and registry, as a user script calls them (the real client).

Logs a pyfunc model twice into the registry, moves an alias and stages, loads
the model back by alias and by stage, and prints what the client read back as
one JSON line.
"""

from __future__ import annotations

import json
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.pyfunc import PythonModel

NAME = "adder"


class Add(PythonModel):
    def __init__(self, k: int) -> None:
        self.k = k

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 - pyfunc's signature
        return [x + self.k for x in model_input]


def main() -> dict:
    mlflow.set_experiment("mlflow-models")
    out: dict = {}
    with mlflow.start_run() as run:
        mlflow.log_params({"k": 1, "kind": "adder"})
        mlflow.set_tag("team", "models")
        one = mlflow.pyfunc.log_model(name="adder-one", python_model=Add(1), registered_model_name=NAME,
                                      params={"k": 1}, tags={"flavor": "pyfunc"}, model_type="adder")
    with mlflow.start_run():
        two = mlflow.pyfunc.log_model(name="adder-two", python_model=Add(2), registered_model_name=NAME)
    c = MlflowClient()
    out["run_id"] = run.info.run_id
    out["versions"] = [one.registered_model_version, two.registered_model_version]
    out["model_ids"] = [one.model_id, two.model_id]
    lm = mlflow.get_logged_model(one.model_id)
    out["logged"] = {"name": lm.name, "status": str(lm.status), "source_run_id": lm.source_run_id,
                     "params": lm.params, "tags": {k: v for k, v in lm.tags.items() if k == "flavor"},
                     "model_type": lm.model_type, "artifact_location": lm.artifact_location}
    out["searched_models"] = sorted(m.name for m in mlflow.search_logged_models(output_format="list"))
    out["run_outputs"] = [o.model_id for o in c.get_run(run.info.run_id).outputs.model_outputs]

    c.set_registered_model_alias(NAME, "champion", "1")
    out["champion"] = c.get_model_version_by_alias(NAME, "champion").version
    out["predict_champion"] = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict([1, 2])
    c.set_registered_model_alias(NAME, "champion", "2")  # the alias moves
    out["predict_moved"] = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict([1, 2])
    out["predict_v1"] = mlflow.pyfunc.load_model(f"models:/{NAME}/1").predict([1])

    c.transition_model_version_stage(NAME, "1", "Production")
    c.transition_model_version_stage(NAME, "2", "Production", archive_existing_versions=True)
    out["stages"] = {v.version: v.current_stage for v in c.search_model_versions(f"name = '{NAME}'")}
    out["latest_production"] = [v.version for v in c.get_latest_versions(NAME, stages=["Production"])]
    out["predict_production"] = mlflow.pyfunc.load_model(f"models:/{NAME}/Production").predict([1])

    c.update_registered_model(NAME, description="adds k")
    c.set_registered_model_tag(NAME, "owner", "ml")
    c.set_model_version_tag(NAME, "1", "validated", "yes")
    c.update_model_version(NAME, "1", description="the first")
    rm = c.get_registered_model(NAME)
    out["registered"] = {"description": rm.description, "tags": rm.tags, "aliases": rm.aliases}
    v1 = c.get_model_version(NAME, "1")
    out["v1"] = {"tags": v1.tags, "description": v1.description, "run_id": v1.run_id, "model_id": v1.model_id,
                 "source": v1.source}
    out["search_registered"] = [m.name for m in c.search_registered_models(filter_string=f"name = '{NAME}'")]
    out["search_like"] = [m.name for m in c.search_registered_models(filter_string="name LIKE 'add%'")]

    c.delete_registered_model_alias(NAME, "champion")
    out["aliases_after_delete"] = c.get_registered_model(NAME).aliases
    c.create_registered_model("scratch")
    c.rename_registered_model("scratch", "scratch2")
    c.delete_registered_model("scratch2")
    out["after_rename_delete"] = sorted(m.name for m in c.search_registered_models())
    try:
        c.create_registered_model(NAME)
        out["duplicate"] = "created"
    except mlflow.exceptions.MlflowException as e:
        out["duplicate"] = e.error_code
    c.delete_model_version(NAME, "1")
    out["after_version_delete"] = sorted(v.version for v in c.search_model_versions(f"name = '{NAME}'"))
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
    sys.stdout.flush()
