#!/usr/bin/env bash
# Offline validation of the deployment artefacts (k8s/ and infra/), run by
# `make deploy-check` (part of `make test`). Needs what tests/scripts/install-deps.sh
# installs: yamllint, kubernetes-validate, python-hcl2, PyYAML, promtool, checkov
# (in its own virtualenv). terraform is optional: `terraform fmt` and, when an AWS
# provider mirror is present, `terraform validate` run only where it exists.
#
#   tests/scripts/validate-deploy.sh           check everything
#   tests/scripts/validate-deploy.sh --write   regenerate the generated files
#       (k8s/operator/prometheusrule.yaml from k8s/rules/aether-alerts.yaml and
#       k8s/dashboards/configmap.yaml from k8s/dashboards/*.json), then check
#
# Every failure names the file. Exit status 0 only when every check passed.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD

MODE=check
case "${1:-}" in
  --write) MODE=write ;;
  "") ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

K8S_VERSION=${K8S_VERSION:-1.31.0}
TOOLS_DIR=${AETHER_TOOLS_DIR:-$HOME/.cache/aether}
TF_PLUGIN_MIRROR=${TF_PLUGIN_MIRROR:-/opt/tf-plugins}

fail() { echo "deploy-check: FAIL: $*" >&2; exit 1; }
say() { echo "deploy-check: $*" >&2; }

CHECKOV=$TOOLS_DIR/deploy-venv/bin/checkov
[ -x "$CHECKOV" ] || CHECKOV=$(command -v checkov || true)
for t in python3 yamllint kubernetes-validate promtool; do
  command -v "$t" >/dev/null 2>&1 || fail "$t is not installed (run \`make deps\`)"
done
[ -n "$CHECKOV" ] || fail "checkov is not installed (run \`make deps\`)"
python3 -c 'import yaml, hcl2' 2>/dev/null || fail "python modules yaml and hcl2 are missing (run \`make deps\`)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
START=$SECONDS

# ---------------------------------------------------------------- structure (Python)
# Generated files, manifests' fields, aether flags against functions/cli, cross
# references, dashboards, metric names, the Terraform sources.
say "structure: generated files, manifests, flags, dashboards, metric names, HCL"
python3 - "$MODE" "$TMP" <<'PY'
import glob, json, os, re, sys

import hcl2
import yaml

MODE, TMP = sys.argv[1], sys.argv[2]
errors = []


def err(path, msg):
    errors.append(f"{path}: {msg}")


def rel(p):
    return os.path.relpath(p)


# ------------------------------------------------------------ generated files
def multiline_str(dumper, s):
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


def prometheusrule_text(rules_path):
    with open(rules_path) as f:
        text = f.read()
    lines = text.splitlines()
    try:
        start = next(i for i, l in enumerate(lines) if l.startswith("groups:"))
    except StopIteration:
        raise SystemExit(f"{rules_path}: no top-level `groups:` line")
    body = "\n".join(("  " + l) if l.strip() else "" for l in lines[start:])
    return (
        "# Generated from k8s/rules/aether-alerts.yaml by\n"
        "# `tests/scripts/validate-deploy.sh --write`: edit that file, not this one.\n"
        "# Needs the Prometheus Operator's CRDs; match your Prometheus resource's\n"
        "# ruleSelector with the labels below.\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: aether-alerts\n"
        "  namespace: monitoring\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: aether\n"
        "    role: alert-rules\n"
        "spec:\n" + body + "\n"
    )


def dashboards_configmap_text(paths):
    out = [
        "# Generated from k8s/dashboards/*.json by\n",
        "# `tests/scripts/validate-deploy.sh --write`: edit the JSON files, not this one.\n",
        "# Grafana's dashboard sidecar loads every ConfigMap labelled grafana_dashboard=\"1\".\n",
        "apiVersion: v1\n",
        "kind: ConfigMap\n",
        "metadata:\n",
        "  name: aether-dashboards\n",
        "  namespace: monitoring\n",
        "  labels:\n",
        "    grafana_dashboard: \"1\"\n",
        "    app.kubernetes.io/part-of: aether\n",
        "  annotations:\n",
        "    # Folder, for a sidecar configured with folderAnnotation: grafana_folder.\n",
        "    grafana_folder: Aether\n",
        "data:\n",
    ]
    for p in paths:
        out.append(f"  {os.path.basename(p)}: |\n")
        with open(p) as f:
            for line in f.read().rstrip("\n").splitlines():
                out.append(("    " + line).rstrip() + "\n")
    return "".join(out)


DASH_DIR = "k8s/dashboards"
dash_paths = sorted(glob.glob(f"{DASH_DIR}/*.json"))
generated = {
    "k8s/operator/prometheusrule.yaml": prometheusrule_text("k8s/rules/aether-alerts.yaml"),
    f"{DASH_DIR}/configmap.yaml": dashboards_configmap_text(dash_paths),
}
for path, text in generated.items():
    if MODE == "write":
        with open(path, "w") as f:
            f.write(text)
        print(f"deploy-check: wrote {path}", file=sys.stderr)
    else:
        try:
            with open(path) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            err(path, "out of date with its source; run `tests/scripts/validate-deploy.sh --write`")

# The PrometheusRule carries exactly the plain rule file's groups.
with open("k8s/rules/aether-alerts.yaml") as f:
    plain = yaml.safe_load(f)
try:
    with open("k8s/operator/prometheusrule.yaml") as f:
        cr = yaml.safe_load(f)
    if (cr or {}).get("spec", {}).get("groups") != plain.get("groups"):
        err("k8s/operator/prometheusrule.yaml", "spec.groups differ from k8s/rules/aether-alerts.yaml")
except FileNotFoundError:
    pass

# ------------------------------------------------------------ aether flags
def load_flags():
    comp = open("functions/cli/src/components.rs").read()
    main = open("functions/cli/src/main.rs").read()
    structs = {}
    for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", comp, re.S):
        body = m.group(2)
        structs[m.group(1)] = (
            set(re.findall(r'long\s*=\s*"([^"]+)"', body)),
            re.findall(r"#\[command\(flatten\)\]\s*pub \w+:\s*(\w+)", body),
        )

    def flags_of(name, seen=()):
        own, flat = structs[name]
        out = set(own)
        for f in flat:
            if f not in seen:
                out |= flags_of(f, seen + (name,))
        return out

    global_flags = set(re.findall(r'long\s*=\s*"([^"]+)",\s*global\s*=\s*true', main))
    enum = re.search(r"enum Command \{(.*?)\n\}", main, re.S)
    if not enum:
        raise SystemExit("functions/cli/src/main.rs: enum Command not found")
    subs = {}
    for variant, struct in re.findall(r"^\s*(\w+)\((?:Box<)?(?:\w+::)*(\w+)>?\)", enum.group(1), re.M):
        if struct in structs:
            subs[variant.lower()] = flags_of(struct) | global_flags
    return subs


SUBCOMMANDS = load_flags()
if not {"sidecar", "store", "query", "compact", "rule"} <= set(SUBCOMMANDS):
    errors.append(f"functions/cli/src: could not read the flags of every component (found {sorted(SUBCOMMANDS)})")

# ------------------------------------------------------------ manifests
CORE = {
    "v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "policy/v1",
    "networking.k8s.io/v1", "autoscaling/v2",
}
CRDS = {
    ("serving.knative.dev/v1", "Service"),
    ("sources.knative.dev/v1", "PingSource"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
NAMESPACE = "monitoring"

all_yaml = sorted(glob.glob("k8s/**/*.yaml", recursive=True))
kustomizations = [p for p in all_yaml if os.path.basename(p) == "kustomization.yaml"]
manifests = [p for p in all_yaml if p not in kustomizations and not p.startswith("k8s/rules/")]
with open(os.path.join(TMP, "manifests.txt"), "w") as f:
    f.write("\n".join(manifests) + "\n")

docs = []  # (path, doc)
for p in manifests:
    try:
        with open(p) as f:
            for d in yaml.safe_load_all(f):
                if d is not None:
                    docs.append((p, d))
    except yaml.YAMLError as e:
        err(p, f"YAML: {e}")

for p, d in docs:
    if not isinstance(d, dict):
        err(p, "a document is not a mapping")
        continue
    av, kind, md = d.get("apiVersion"), d.get("kind"), d.get("metadata") or {}
    name = md.get("name")
    if not av or not kind or not name:
        err(p, f"document without apiVersion/kind/metadata.name: {av} {kind} {name}")
        continue
    if av not in CORE and (av, kind) not in CRDS:
        err(p, f"{kind} {name}: apiVersion {av} is neither a core API checked by kubernetes-validate nor a CRD this script checks")
    if kind not in CLUSTER_SCOPED and md.get("namespace") != NAMESPACE:
        err(p, f"{kind} {name}: metadata.namespace must be {NAMESPACE}")


def by_kind(kind, av=None):
    return [(p, d) for p, d in docs if isinstance(d, dict) and d.get("kind") == kind and (av is None or d.get("apiVersion") == av)]


def name(d):
    return d["metadata"]["name"]


def pod_specs():
    """(path, owner description, pod spec, pod labels, knative?)"""
    for p, d in docs:
        if not isinstance(d, dict):
            continue
        kind, spec = d.get("kind"), d.get("spec") or {}
        tmpl = None
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            tmpl = spec.get("template")
        elif kind == "CronJob":
            tmpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
        elif kind == "Service" and d.get("apiVersion") == "serving.knative.dev/v1":
            tmpl = spec.get("template")
        if tmpl is None:
            continue
        knative = d.get("apiVersion") == "serving.knative.dev/v1"
        yield p, f"{kind} {name(d)}", tmpl.get("spec") or {}, (tmpl.get("metadata") or {}).get("labels") or {}, knative


configmaps = {name(d) for _, d in by_kind("ConfigMap")}
secrets = {name(d) for _, d in by_kind("Secret")}
for k in kustomizations:
    with open(k) as f:
        kd = yaml.safe_load(f) or {}
    for g in kd.get("configMapGenerator") or []:
        configmaps.add(g.get("name"))
headless = {}  # name -> set of port names
services = set()
for p, d in by_kind("Service", "v1"):
    spec = d.get("spec") or {}
    services.add(name(d))
    ports = {pt.get("name") for pt in spec.get("ports") or []}
    if spec.get("clusterIP") == "None":
        headless[name(d)] = ports
knative_services = {name(d) for _, d in by_kind("Service", "serving.knative.dev/v1")}

COMPACT_RETENTION = {}
for p, owner, spec, labels, knative in pod_specs():
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    if knative:
        if len(spec.get("containers") or []) != 1:
            err(p, f"{owner}: a Knative Service runs exactly one container here")
        for vol in spec.get("volumes") or []:
            if not ({"configMap", "secret", "projected"} & set(vol)):
                err(p, f"{owner}: volume {vol.get('name')}: Knative allows only configMap/secret/projected volumes without feature flags")
    if labels.get("app.kubernetes.io/part-of") == "aether" and not labels.get("app.kubernetes.io/component"):
        err(p, f"{owner}: pod label app.kubernetes.io/component is missing (it names the scrape job aether-<component>)")
    for vol in spec.get("volumes") or []:
        if "configMap" in vol and vol["configMap"].get("name") not in configmaps:
            err(p, f"{owner}: volume {vol.get('name')} refers to ConfigMap {vol['configMap'].get('name')} that no manifest defines")
        if "secret" in vol and vol["secret"].get("secretName") not in secrets:
            err(p, f"{owner}: volume {vol.get('name')} refers to an undefined Secret")
    for c in containers:
        cname = c.get("name", "(unnamed)")
        for ef in c.get("envFrom") or []:
            ref = (ef.get("secretRef") or {}).get("name")
            if ref and ref not in secrets:
                err(p, f"{owner} container {cname}: envFrom Secret {ref} is not defined")
        image = c.get("image", "")
        if not re.search(r"/aether(:|@|$)", image):
            continue
        args = c.get("args") or []
        if c.get("command"):
            err(p, f"{owner} container {cname}: the image's entrypoint is `aether`; give args only")
        if not args or args[0] not in SUBCOMMANDS:
            err(p, f"{owner} container {cname}: args[0] must be an aether subcommand ({', '.join(sorted(SUBCOMMANDS))}), got {args[:1]}")
            continue
        sub, known = args[0], SUBCOMMANDS[args[0]]
        flags = {}
        for a in args[1:]:
            if not isinstance(a, str) or not a.startswith("--"):
                err(p, f"{owner} container {cname}: argument {a!r} is not in --flag=value form")
                continue
            flag, _, value = a[2:].partition("=")
            if flag not in known:
                err(p, f"{owner} container {cname}: `aether {sub}` has no flag --{flag} (functions/cli/src/components.rs)")
            flags.setdefault(flag, []).append(value)
        if knative and ({"http-address", "grpc-address"} & set(flags)):
            err(p, f"{owner}: under Knative aether listens on $PORT; do not set --http-address/--grpc-address")
        if not knative and sub != "sidecar":
            ports = {pt.get("name") for pt in c.get("ports") or []}
            if "http" not in ports:
                err(p, f"{owner} container {cname}: a port named http is needed (metrics scrape and probes)")
        if knative:
            ports = c.get("ports") or []
            want = "h2c" if sub == "store" else None
            if len(ports) != 1 or ports[0].get("name") not in ("http1", "h2c"):
                err(p, f"{owner}: one container port named http1 or h2c is required")
            elif want and ports[0].get("name") != want:
                err(p, f"{owner}: store-read serves gRPC: its port must be named h2c")
        if sub in ("store", "compact", "rule", "sidecar") and not ({"objstore.config-file", "objstore.config"} & set(flags)):
            err(p, f"{owner}: `aether {sub}` needs --objstore.config-file")
        if sub == "compact":
            COMPACT_RETENTION[f"{p}: {owner}"] = tuple(
                (flags.get(f"retention.resolution-{r}") or ["0d"])[0] for r in ("raw", "5m", "1h"))
            if "wait" in flags and owner.startswith(("CronJob", "Service")):
                err(p, f"{owner}: a scheduled compactor runs one pass: no --wait")
        for flag in ("endpoint", "store"):
            for v in flags.get(flag, []):
                m = re.fullmatch(r"dnssrv\+_grpc\._tcp\.([a-z0-9-]+)\.monitoring\.svc\.cluster\.local", v)
                if m:
                    if m.group(1) not in headless:
                        err(p, f"{owner}: --{flag}={v}: no headless Service {m.group(1)} in k8s/")
                    elif "grpc" not in headless[m.group(1)]:
                        err(p, f"{owner}: --{flag}={v}: Service {m.group(1)} has no port named grpc")
                    continue
                m = re.fullmatch(r"([a-z0-9-]+)\.monitoring\.svc\.cluster\.local:80", v)
                if m and m.group(1) not in knative_services:
                    err(p, f"{owner}: --{flag}={v}: no Knative Service {m.group(1)}")
        for v in flags.get("query", []):
            m = re.fullmatch(r"http://([a-z0-9-]+)\.monitoring\.svc\.cluster\.local(:\d+)?", v)
            if m and m.group(1) not in services | knative_services:
                err(p, f"{owner}: --query={v}: no Service {m.group(1)}")

# One retention everywhere: every compactor and the Terraform example agree.
if len(set(COMPACT_RETENTION.values())) > 1:
    err("k8s", "compactors disagree on retention: " + "; ".join(f"{k} {v}" for k, v in COMPACT_RETENTION.items()))

# Services select pods that exist.
pod_label_sets = [labels for _, _, _, labels, _ in pod_specs()]
for p, d in by_kind("Service", "v1"):
    sel = (d.get("spec") or {}).get("selector") or {}
    if sel and not any(all(l.get(k) == v for k, v in sel.items()) for l in pod_label_sets):
        err(p, f"Service {name(d)}: selector {sel} matches no pod template")

# Knative Services and PingSources.
KN_ANNOTATIONS = {"min-scale", "max-scale", "initial-scale", "target", "target-utilization-percentage",
                  "metric", "class", "window", "scale-down-delay"}
for p, d in by_kind("Service", "serving.knative.dev/v1"):
    tmpl = (d.get("spec") or {}).get("template") or {}
    for k, v in ((tmpl.get("metadata") or {}).get("annotations") or {}).items():
        if k.startswith("autoscaling.knative.dev/"):
            if k.split("/", 1)[1] not in KN_ANNOTATIONS:
                err(p, f"Knative Service {name(d)}: unknown annotation {k}")
            if not isinstance(v, str):
                err(p, f"Knative Service {name(d)}: annotation {k} must be a string (quote it)")
    ts = tmpl.get("spec") or {}
    for k in ("timeoutSeconds", "containerConcurrency"):
        if k in ts and not (isinstance(ts[k], int) and ts[k] >= 0):
            err(p, f"Knative Service {name(d)}: spec.template.spec.{k} must be a non-negative integer")
    vis = (d["metadata"].get("labels") or {}).get("networking.knative.dev/visibility")
    if vis not in (None, "cluster-local"):
        err(p, f"Knative Service {name(d)}: visibility label must be cluster-local")

CRON = re.compile(r"^(\S+\s+){4}\S+$")
for p, d in by_kind("PingSource", "sources.knative.dev/v1"):
    spec = d.get("spec") or {}
    if not CRON.match(str(spec.get("schedule", ""))):
        err(p, f"PingSource {name(d)}: spec.schedule must be a 5-field cron expression")
    sink = spec.get("sink") or {}
    ref = sink.get("ref") or {}
    if ref.get("apiVersion") != "serving.knative.dev/v1" or ref.get("kind") != "Service":
        err(p, f"PingSource {name(d)}: spec.sink.ref must be a serving.knative.dev/v1 Service")
    elif ref.get("name") not in knative_services:
        err(p, f"PingSource {name(d)}: sink Service {ref.get('name')} is not defined")
    if sink.get("uri") != "/-/tick":
        err(p, f"PingSource {name(d)}: spec.sink.uri must be /-/tick (one pass / one tick per event)")
    if "data" in spec and not isinstance(spec["data"], str):
        err(p, f"PingSource {name(d)}: spec.data must be a string")

for p, d in by_kind("PrometheusRule", "monitoring.coreos.com/v1"):
    groups = (d.get("spec") or {}).get("groups")
    if not groups:
        err(p, f"PrometheusRule {name(d)}: spec.groups is empty")
    for g in groups or []:
        if not g.get("name") or not g.get("rules"):
            err(p, f"PrometheusRule {name(d)}: every group needs name and rules")
        for r in g.get("rules") or []:
            if not r.get("expr") or not (r.get("alert") or r.get("record")):
                err(p, f"PrometheusRule {name(d)}: group {g.get('name')}: every rule needs expr and alert or record")

for p, d in by_kind("PodMonitor", "monitoring.coreos.com/v1"):
    spec = d.get("spec") or {}
    if not (spec.get("selector") or {}).get("matchLabels"):
        err(p, f"PodMonitor {name(d)}: spec.selector.matchLabels is required")
    for ep in spec.get("podMetricsEndpoints") or [{}]:
        if not ep.get("port"):
            err(p, f"PodMonitor {name(d)}: every podMetricsEndpoint needs a port")

# Every manifest belongs to exactly one kustomization, and what they list exists.
listed = {}
for k in kustomizations:
    base = os.path.dirname(k)
    with open(k) as f:
        kd = yaml.safe_load(f) or {}
    if kd.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kd.get("kind") != "Kustomization":
        err(k, "apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
    refs = list(kd.get("resources") or [])
    for g in kd.get("configMapGenerator") or []:
        refs += [f.split("=", 1)[-1] for f in g.get("files") or []]
    for r in refs:
        path = os.path.normpath(os.path.join(base, r))
        if not os.path.exists(path):
            err(k, f"lists {r}, which does not exist")
        listed.setdefault(path, []).append(k)
    for img in kd.get("images") or []:
        if img.get("name") != "ghcr.io/aether-metrics/aether":
            err(k, f"images: {img.get('name')} is not the aether image")
for m in manifests:
    owners = listed.get(os.path.normpath(m), [])
    if len(owners) != 1:
        err(m, f"must be listed by exactly one kustomization.yaml (listed by {owners or 'none'})")

# No credentials in the tree: objstore YAML refers to the environment; Secrets hold placeholders.
for p, d in by_kind("ConfigMap"):
    for k, v in ((d.get("data") or {}).items()):
        for key in ("access_key", "secret_key", "session_token"):
            for m in re.finditer(rf"^\s*{key}:\s*(\S+)", str(v), re.M):
                if not re.fullmatch(r"[\"']?\$(\{\w+\}|\(\w+\))[\"']?", m.group(1)):
                    err(p, f"ConfigMap {name(d)} {k}: {key} must be an environment reference like ${{AWS_SECRET_ACCESS_KEY}}")
for p, d in by_kind("Secret"):
    for k, v in ((d.get("stringData") or {}).items()):
        if v != "replace-me":
            err(p, f"Secret {name(d)}: {k} must hold the placeholder replace-me, never a real value")
    if d.get("data"):
        err(p, f"Secret {name(d)}: no base64 data in the tree")
for p in glob.glob("k8s/**/*", recursive=True) + glob.glob("infra/**/*", recursive=True):
    if os.path.isfile(p):
        with open(p, errors="replace") as f:
            t = f.read()
        if re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", t) or re.search(r"secret_access_key\W{1,4}[A-Za-z0-9/+]{40}\b", t, re.I):
            err(p, "looks like an AWS credential")

# The Prometheus config inside the ConfigMap, for `promtool check config`.
# Debian's promtool is built without Kubernetes service discovery: the
# kubernetes_sd_configs are swapped for a static target there (the relabelling
# is still checked), after a check of the fields we use.
for p, d in by_kind("ConfigMap"):
    if name(d) == "prometheus-config":
        try:
            cfg = yaml.safe_load(d["data"]["prometheus.yml.tmpl"])
        except yaml.YAMLError as e:
            err(p, f"ConfigMap prometheus-config: prometheus.yml.tmpl: {e}")
            continue
        for sc in cfg.get("scrape_configs") or []:
            sds = sc.pop("kubernetes_sd_configs", None)
            if sds is None:
                continue
            for sd in sds:
                if sd.get("role") not in ("pod", "service", "endpoints", "endpointslice", "node", "ingress"):
                    err(p, f"scrape job {sc.get('job_name')}: kubernetes_sd_configs role {sd.get('role')!r} is not a Kubernetes SD role")
                if set(sd) - {"role", "namespaces", "selectors", "attach_metadata"}:
                    err(p, f"scrape job {sc.get('job_name')}: unexpected kubernetes_sd_configs fields {sorted(set(sd) - {'role', 'namespaces', 'selectors', 'attach_metadata'})}")
            sc["static_configs"] = [{"targets": ["localhost:10902"]}]
        with open(os.path.join(TMP, "prometheus.yml"), "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)

# ------------------------------------------------------------ metric names
def code_metrics():
    names = set()
    files = []
    for comp in ("sidecar", "store", "query", "compact", "rule", "cli"):
        files += glob.glob(f"functions/{comp}/src/**/*.rs", recursive=True)
    files += glob.glob("shared/*/src/**/*.rs", recursive=True)
    for fp in files:
        # Test data (series named http_requests_total and the like) is not an export.
        if fp.endswith(("tests.rs", "conformance.rs")):
            continue
        with open(fp) as f:
            text = f.read().split("#[cfg(test)]")[0]
        text = "\n".join(l for l in text.splitlines() if "__name__" not in l)
        names |= set(re.findall(r'"((?:thanos|aether|prometheus|http|grpc)_[a-z0-9_]+)"', text))
    return names


# Names the dashboards and alerts use before the component exports them, with the
# place that must export them. A notice lists those still missing from the code.
ASSUMED = {
    "http_requests_total": "functions/query: HTTP API requests, labels handler and code (Thanos's name)",
    "http_request_duration_seconds": "functions/query: HTTP API latency histogram, label handler (Thanos's name)",
    "prometheus_rule_evaluation_failures_total": "functions/rule: failed rule evaluations, label rule_group",
    "prometheus_rule_group_last_evaluation_timestamp_seconds": "functions/rule: per group, label rule_group",
}
BUILTIN = {"up"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "Inf", "NaN"}
CODE = code_metrics()
KNOWN = CODE | set(ASSUMED) | BUILTIN


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    out = set()
    for m in re.finditer(r"(?<![0-9A-Za-z_:.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        if e[m.end():].lstrip().startswith("(") or tok in KEYWORDS:
            continue
        out.add(tok)
    return out


def base_name(n):
    for suffix in ("_bucket", "_count", "_sum"):
        if n.endswith(suffix) and n[: -len(suffix)] in KNOWN:
            return n[: -len(suffix)]
    return n


def check_metrics(path, where, expr):
    for n in metric_names(expr):
        if base_name(n) not in KNOWN:
            err(path, f"{where}: metric {n} is exported by no component (grep functions/*/src) and is not in the assumed list")
    return {base_name(n) for n in metric_names(expr)}


used = set()
for g in plain.get("groups") or []:
    for r in g.get("rules") or []:
        used |= check_metrics("k8s/rules/aether-alerts.yaml", f"rule {r.get('alert') or r.get('record')}", r.get("expr", ""))

# ------------------------------------------------------------ dashboards
COMPONENT_PREFIX = {
    "sidecar": ("thanos_shipper_", "thanos_sidecar_"),
    "store": ("aether_store_",),
    "query": ("http_",),
    "compact": ("aether_compact_",),
    "rule": ("prometheus_rule_", "aether_rule_"),
}
dash_exprs = []
uids = {}
present = {os.path.basename(p) for p in dash_paths}
for comp in COMPONENT_PREFIX:
    if f"aether-{comp}.json" not in present:
        err(DASH_DIR, f"aether-{comp}.json is missing (one dashboard per component)")
for p in dash_paths:
    try:
        with open(p) as f:
            dash = json.load(f)
    except json.JSONDecodeError as e:
        err(p, f"invalid JSON: {e}")
        continue
    comp = os.path.basename(p)[len("aether-"):-len(".json")]
    for k in ("title", "uid", "panels", "templating", "schemaVersion"):
        if k not in dash:
            err(p, f"missing {k}")
    if dash.get("uid") in uids:
        err(p, f"uid {dash.get('uid')} is also used by {uids[dash['uid']]}")
    uids[dash.get("uid")] = p
    tvars = {v.get("name"): v for v in (dash.get("templating") or {}).get("list", [])}
    def walk(o, where):
        if isinstance(o, dict):
            dsv = o.get("datasource")
            if isinstance(dsv, dict) and dsv.get("uid") != "${datasource}":
                err(p, f"{where}: datasource uid must be ${{datasource}}, got {dsv.get('uid')!r}")
            for k, v in o.items():
                walk(v, f"{where}.{k}" if where else k)
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, f"{where}[{i}]")

    walk(dash, "")
    ds = tvars.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err(p, "needs a templating variable `datasource` of type datasource and query prometheus")
    panels = dash.get("panels") or []
    if not panels:
        err(p, "has no panels")
    ids = [pl.get("id") for pl in panels]
    if len(set(ids)) != len(ids):
        err(p, "panel ids are not unique")
    comp_metrics = set()
    for pl in panels:
        title = pl.get("title", f"panel {pl.get('id')}")
        if not pl.get("gridPos"):
            err(p, f"panel {title!r}: gridPos missing")
        targets = pl.get("targets") or []
        if not targets:
            err(p, f"panel {title!r}: no targets")
        for t in targets:
            expr = t.get("expr")
            if not expr:
                err(p, f"panel {title!r}: target {t.get('refId')} has no expr")
                continue
            comp_metrics |= check_metrics(p, f"panel {title!r}", expr)
            dash_exprs.append((p, title, expr))
    prefixes = COMPONENT_PREFIX.get(comp)
    if prefixes is None:
        err(p, f"file name must be aether-<component>.json with a component of {sorted(COMPONENT_PREFIX)}")
    elif not any(m.startswith(prefixes) for m in comp_metrics):
        err(p, f"queries none of the {comp} metrics ({', '.join(prefixes)}...)")
    used |= comp_metrics

# Dashboard expressions as recording rules, so promtool checks their syntax.
with open(os.path.join(TMP, "dashboard-exprs.yaml"), "w") as f:
    rules = []
    for i, (p, title, expr) in enumerate(dash_exprs):
        e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$job", "aether-.*")
        rules.append({"record": f"dashboard:expr_{i}", "expr": e, "labels": {"source": f"{p} {title}"}})
    yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f, sort_keys=False)
with open(os.path.join(TMP, "dashboard-exprs.map"), "w") as f:
    for i, (p, title, expr) in enumerate(dash_exprs):
        f.write(f"dashboard:expr_{i}\t{p}: panel {title!r}: {expr}\n")

missing = sorted(n for n in used & set(ASSUMED) if n not in CODE)
if missing:
    print("deploy-check: notice: metrics used by alerts/dashboards and assumed, not yet exported:", file=sys.stderr)
    for n in missing:
        print(f"deploy-check:   {n}  <- {ASSUMED[n]}", file=sys.stderr)

# ------------------------------------------------------------ Terraform sources
def unq(v):
    return v[1:-1] if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"' else v


tf = {}
for p in sorted(glob.glob("infra/**/*.tf", recursive=True)):
    try:
        with open(p) as f:
            tf[p] = hcl2.load(f)
    except Exception as e:  # python-hcl2 raises lark errors of several types
        err(p, f"HCL does not parse: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    with open(p) as f:
        for n, line in enumerate(f, 1):
            m = re.search(r"#\s*checkov:skip=([A-Z0-9_]+)(:(.*))?", line)
            if m and len((m.group(3) or "").strip()) < 15:
                err(f"{p}:{n}", f"checkov skip {m.group(1)} without a reason")
if not tf:
    err("infra", "no .tf files")
for p, d in tf.items():
    for block in d.get("variable") or []:
        for vname, v in block.items():
            if not unq(v.get("description", "")):
                err(p, f"variable {unq(vname)} has no description")
            if "type" not in v:
                err(p, f"variable {unq(vname)} has no type")
    for block in d.get("output") or []:
        for oname, o in block.items():
            if not unq(o.get("description", "")):
                err(p, f"output {unq(oname)} has no description")
    for block in d.get("resource") or []:
        for rtype, rs in block.items():
            if unq(rtype) != "aws_s3_bucket_lifecycle_configuration":
                continue
            for rname, r in rs.items():
                rules = r.get("rule") or []
                if not any(rl.get("abort_incomplete_multipart_upload") and "filter" in rl for rl in rules):
                    err(p, f"lifecycle {unq(rname)}: no rule aborts incomplete multipart uploads bucket-wide")
                for rl in rules:
                    for ex in rl.get("expiration") or []:
                        if "days" in ex or "date" in ex:
                            err(p, f"lifecycle {unq(rname)} rule {unq(rl.get('id'))}: expires current objects by age, which deletes blocks a retention tier still reads; retention is the compactor's job")
                    for tr in rl.get("transition") or []:
                        if re.search(r"GLACIER\b(?!_IR)|DEEP_ARCHIVE", str(tr.get("storage_class"))):
                            err(p, f"lifecycle {unq(rname)} rule {unq(rl.get('id'))}: archive classes need a restore before a GET; queries would break")
example = tf.get("infra/examples/basic/main.tf", {})
for block in example.get("module") or []:
    for mname, m in block.items():
        ret = tuple(unq(m.get(f"retention_{r}")) for r in ("raw", "5m", "1h"))
        if ret != ("30d", "180d", "1y"):
            err("infra/examples/basic/main.tf", f"module {unq(mname)}: the example keeps the seed's retention 30d/180d/1y, got {ret}")
        for k, v in COMPACT_RETENTION.items():
            if v != ret:
                err(k.split(":")[0], f"compactor retention {v} differs from infra/examples/basic {ret}")

if errors:
    for e in errors:
        print(f"deploy-check: FAIL: {e}", file=sys.stderr)
    sys.exit(1)
PY

# ---------------------------------------------------------------- yamllint
say "yamllint (k8s/.yamllint)"
if ! yamllint -s -f parsable -c k8s/.yamllint k8s >"$TMP/yl.out" 2>&1; then
  sed 's/^/deploy-check: FAIL: /' "$TMP/yl.out" >&2
  fail "yamllint found problems in k8s/ (file:line:column above)"
fi

# ---------------------------------------------------------------- kubernetes-validate
# Core kinds against Kubernetes $K8S_VERSION's schemas, strictly (unknown fields
# fail). CRDs (Knative, Prometheus Operator) were checked above; any other kind
# without a schema is an error.
say "kubernetes-validate (Kubernetes $K8S_VERSION, strict)"
mapfile -t MANIFESTS <"$TMP/manifests.txt"
kv_rc=0
kubernetes-validate -k "$K8S_VERSION" --strict --quiet "${MANIFESTS[@]}" >"$TMP/kv.out" 2>&1 || kv_rc=$?
grep -v -E "Couldn't find schema for kind (Service with api version serving\.knative\.dev/v1|PingSource with api version sources\.knative\.dev/v1|PrometheusRule with api version monitoring\.coreos\.com/v1|PodMonitor with api version monitoring\.coreos\.com/v1) " "$TMP/kv.out" >"$TMP/kv.bad" || true
if [ "$kv_rc" -ne 0 ] || [ -s "$TMP/kv.bad" ]; then
  sed 's/^/deploy-check: FAIL: /' "$TMP/kv.bad" >&2
  fail "kubernetes-validate rejected a manifest (file and resource above)"
fi

# ---------------------------------------------------------------- promtool
say "promtool: alert rules, their unit tests, dashboard expressions, Prometheus config"
promtool check rules k8s/rules/aether-alerts.yaml >"$TMP/p.out" 2>&1 || { cat "$TMP/p.out" >&2; fail "k8s/rules/aether-alerts.yaml: promtool check rules failed"; }
(cd k8s/rules && promtool test rules aether-alerts.test.yaml) >"$TMP/p.out" 2>&1 || { cat "$TMP/p.out" >&2; fail "k8s/rules/aether-alerts.test.yaml: promtool test rules failed"; }
if ! promtool check rules "$TMP/dashboard-exprs.yaml" >"$TMP/p.out" 2>&1; then
  cat "$TMP/p.out" >&2
  for r in $(grep -o 'dashboard:expr_[0-9]*' "$TMP/p.out" | sort -u); do
    awk -F'\t' -v r="$r" '$1 == r { print "deploy-check: FAIL: " $2 }' "$TMP/dashboard-exprs.map" >&2
  done
  fail "k8s/dashboards: a panel's PromQL does not parse (file and panel above)"
fi
promtool check config --syntax-only "$TMP/prometheus.yml" >"$TMP/p.out" 2>&1 || { cat "$TMP/p.out" >&2; fail "k8s/prometheus-sidecar.yaml: ConfigMap prometheus-config: promtool check config failed"; }

# ---------------------------------------------------------------- terraform
if command -v terraform >/dev/null 2>&1; then
  export TF_CLI_CONFIG_FILE=$TMP/terraformrc TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
  : >"$TF_CLI_CONFIG_FILE"
  say "terraform fmt -check"
  terraform fmt -check -recursive -list=true infra >"$TMP/fmt.out" 2>&1 \
    || fail "terraform fmt would change $(tr '\n' ' ' <"$TMP/fmt.out")(run \`terraform fmt -recursive infra\`)"
  if [ -d "$TF_PLUGIN_MIRROR/registry.terraform.io/hashicorp/aws" ]; then
    say "terraform validate (providers from $TF_PLUGIN_MIRROR)"
    cat >"$TF_CLI_CONFIG_FILE" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$TF_PLUGIN_MIRROR"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
EOF
    cp -r infra "$TMP/infra"
    for dir in "$TMP"/infra/examples/*/; do
      name=infra/examples/$(basename "$dir")
      (cd "$dir" && TF_DATA_DIR=$TMP/tfdata-$(basename "$dir") terraform init -backend=false -input=false -no-color >"$TMP/tf.out" 2>&1) \
        || { cat "$TMP/tf.out" >&2; fail "$name: terraform init (offline) failed"; }
      (cd "$dir" && TF_DATA_DIR=$TMP/tfdata-$(basename "$dir") terraform validate -no-color >"$TMP/tf.out" 2>&1) \
        || { sed "s#$TMP/##g" "$TMP/tf.out" >&2; fail "$name: terraform validate failed in $(grep -o 'on [^ ]*\.tf line [0-9]*' "$TMP/tf.out" | sort -u | tr '\n' ' ')(see above)"; }
    done
    # Module tests with a mocked AWS provider: least privilege, defaults,
    # validations. The functions' zips only need to exist.
    for bin in query store compact rule; do
      mkdir -p "$TMP/lambda/aether-$bin-lambda" && echo stub >"$TMP/lambda/aether-$bin-lambda/bootstrap.zip"
    done
    for dir in "$TMP"/infra/modules/*/; do
      [ -d "$dir/tests" ] || continue
      name=infra/modules/$(basename "$dir")
      say "terraform test $name (mocked AWS provider)"
      (cd "$dir" && TF_DATA_DIR=$TMP/tfdata-mod-$(basename "$dir") terraform init -backend=false -input=false -no-color >"$TMP/tf.out" 2>&1) \
        || { cat "$TMP/tf.out" >&2; fail "$name: terraform init (offline) failed"; }
      (cd "$dir" && TF_DATA_DIR=$TMP/tfdata-mod-$(basename "$dir") terraform test -no-color -var "artifacts_dir=$TMP/lambda" >"$TMP/tf.out" 2>&1) \
        || { sed "s#$TMP/##g" "$TMP/tf.out" >&2; fail "$name/tests: terraform test failed: $(grep -o 'run "[^"]*"\.\.\. fail' "$TMP/tf.out" | tr '\n' ' ')(assertions above)"; }
    done
  else
    say "terraform validate skipped: no AWS provider mirror at $TF_PLUGIN_MIRROR (providers cannot be downloaded offline)"
  fi
else
  say "terraform not installed: fmt/validate skipped (HCL parsed by python-hcl2 above)"
fi

# ---------------------------------------------------------------- checkov
say "checkov (terraform, offline)"
if ! (cd infra && "$CHECKOV" -d . --framework terraform --skip-download --quiet --compact >"$TMP/ck.out" 2>&1); then
  cat "$TMP/ck.out" >&2
  fail "checkov found failing checks in $(grep -o 'File: [^ ]*' "$TMP/ck.out" | sed 's#File: /#infra/#' | sort -u | tr '\n' ' ')(details above; fix, or skip with #checkov:skip=ID:reason)"
fi

say "ok ($((SECONDS - START)) s)"
