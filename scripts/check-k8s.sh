#!/usr/bin/env bash
# Checks the Kubernetes manifests without a cluster, on what really renders: each overlay of
# deploy/k8s, and the components no overlay uses, rendered with `kubectl kustomize`; every object
# validated against the Kubernetes API schemas (kubernetes-validate from PyPI, strict: an unknown
# field fails) for the oldest and the newest Kubernetes version the manifests support, and every
# custom resource against the openAPIV3Schema of its CRD vendored in deploy/k8s/crds. Also: the
# generated PrometheusRule and dashboard ConfigMap match their sources (scripts/k8s-generate.py),
# and every key of deploy/k8s/nats/values.yaml exists in the NATS chart's defaults.
#
#   scripts/check-k8s.sh            check, printing what was validated
#   scripts/check-k8s.sh --install  only install the validator
#
# kubectl is not in Debian's packages; without it the check says so and is skipped.
# tests/kubernetes.rs checks what a schema cannot (the ScaledObject's stream and consumer, the
# probes, the grace periods).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

# The oldest version: the gateway's pre-stop pause is the kubelet's sleep action, on by default
# from this one.
K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.37.0"}
VENV=.data/kubernetes-validate-venv
ensure_venv "$VENV" kubernetes-validate "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# The validator's own dependency, pinned too: the custom resources are checked with it directly.
"$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("jsonschema") != "4.26.0")' \
  || "$VENV/bin/pip" install -q "jsonschema==4.26.0"
[[ ${1:-} == --install ]] && exit 0

if ! command -v kubectl >/dev/null; then
  echo "[k8s] kubectl not installed (it is not in Debian's packages): Kubernetes manifests not checked" >&2
  exit 0
fi

echo "[k8s] generated files in sync with their sources (scripts/k8s-generate.py --check)" >&2
"$VENV/bin/python" scripts/k8s-generate.py --check

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

render() { # NAME DIR
  echo "[k8s] kubectl kustomize $2" >&2
  kubectl kustomize "$2" >"$out/$1.yaml"
}
render single deploy/k8s/overlays/single
render production deploy/k8s/overlays/production

# The alternatives no overlay uses, swapped into the production overlay's choices: the Prometheus
# adapter's HPA for KEDA, a Postgres outside the cluster for CloudNativePG.
variant=$out/production-alternatives
mkdir "$variant"
k8s=$(realpath --relative-to="$variant" deploy/k8s)
cat >"$variant/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: ingest
resources:
  - $k8s/base
components:
  - $k8s/components/hpa-prometheus-adapter
  - $k8s/components/external-database
  - $k8s/components/monitoring
EOF
render production-alternatives "$variant"
cp deploy/k8s/examples/cnpg-cluster.yaml "$out/cnpg-example.yaml"

"$VENV/bin/python" - "$out" $K8S_VERSIONS <<'PY'
"""Validates every object of the rendered files; exits 1 on the first file with a failure."""
import sys
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate import utils as kv

out, versions = Path(sys.argv[1]), sys.argv[2:]


def strict(schema):
    """The CRD's schema refusing unknown fields, as kubernetes-validate's --strict does for the
    built-in kinds: the API server would otherwise drop a misspelt field with a warning."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: strict(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    return schema


crds = {}
for path in sorted(Path("deploy/k8s/crds").glob("*.yaml")):
    crd = yaml.safe_load(path.read_text())
    for version in crd["spec"]["versions"]:
        key = (f'{crd["spec"]["group"]}/{version["name"]}', crd["spec"]["names"]["kind"])
        schema = strict(version["schema"]["openAPIV3Schema"])
        crds[key] = (path.name, jsonschema.Draft4Validator(schema))

failed = 0
for rendered in sorted(out.glob("*.yaml")):
    objects = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    if not objects:
        print(f"{rendered.stem}: nothing rendered", file=sys.stderr)
        failed += 1
    for obj in objects:
        what = f'{rendered.stem}: {obj["kind"]} {obj["metadata"]["name"]}'
        crd = crds.get((obj["apiVersion"], obj["kind"]))
        try:
            if crd:
                # Not jsonschema.validate: it first checks the schema against the metaschema,
                # whose regular expressions are Python's, and the CRDs' are Go's.
                error = jsonschema.exceptions.best_match(crd[1].iter_errors(obj))
                if error:
                    raise error
                print(f"[k8s] {what}: valid against the CRD {crd[0]}", file=sys.stderr)
            else:
                for version in versions:
                    kv.validate(obj, version, strict=True)
                print(f"[k8s] {what}: valid (Kubernetes {', '.join(versions)}, strict)", file=sys.stderr)
        except jsonschema.ValidationError as error:
            # The whole error would print the schema too.
            where = "/".join(str(p) for p in error.absolute_path)
            print(f"[k8s] {what}: INVALID at {where}: {error.message}", file=sys.stderr)
            failed += 1
        except Exception as error:
            print(f"[k8s] {what}: INVALID: {error}", file=sys.stderr)
            failed += 1

# The NATS chart ignores a key it does not know: a misspelt one would pass silently.
def missing(ours, theirs, path=""):
    for key, value in ours.items():
        here = f"{path}.{key}" if path else key
        if not isinstance(theirs, dict) or key not in theirs:
            yield here
        elif isinstance(value, dict) and theirs[key]:
            yield from missing(value, theirs[key], here)

values = yaml.safe_load(Path("deploy/k8s/nats/values.yaml").read_text())
defaults = yaml.safe_load(Path("deploy/k8s/nats/chart-defaults.yaml").read_text())
unknown = list(missing(values, defaults))
for key in unknown:
    print(f"[k8s] deploy/k8s/nats/values.yaml: {key} is not a key of the NATS chart", file=sys.stderr)
if not unknown:
    print("[k8s] deploy/k8s/nats/values.yaml: every key is one of the NATS chart's", file=sys.stderr)

sys.exit(1 if failed or unknown else 0)
PY
echo "[k8s] all rendered objects valid" >&2
