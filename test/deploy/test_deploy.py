#!/usr/bin/env python3
"""Static tests of knd's deployment: deploy/ (kustomize base + OpenShift overlay), the
examples, docs/deploy.md and the Containerfile.

No cluster and no container engine exist on the build machines, so these tests check what can
be checked without one, against the code rather than against copies of it:
  - both kustomizations render (kubectl kustomize) into well-formed objects;
  - the DaemonSet passes only flags knd-driver defines, and its host paths cover the sockets
    and directories the driver uses with those flags;
  - the ClusterRole grants exactly the (resource, verb) pairs the code calls: the set is
    derived by scanning src/ and cmd/ for kube::Client calls and the API paths they use;
  - the admission policies' CEL, evaluated with cel-go (the API server's CEL, built from
    Debian's sources by test/deploy/celeval.sh) on requests knd makes and requests it must not
    make: own node allowed, other nodes, other drivers, other pod fields denied;
  - DeviceClass CEL and example constraints use only attributes the inventory publishes, and
    the DeviceClass selectors (evaluated with cel-go) select the devices they are meant to;
  - every YAML example parses, and NetworkConfig examples are valid;
  - the Containerfile's runtime packages exist in Debian 12 and provide every shared library
    the built binaries load.
Checks that need a tool this machine lacks (kubectl, apt lists, built binaries, the cel-go
fixtures when Debian's archive cannot be reached) skip visibly.

Run: python3 test/deploy/test_deploy.py -v   (ctest: deploy_manifests, label unit)
"""

import base64
import copy
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
import urllib.parse

import yaml

SRC = os.environ.get("KND_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("KND_BINARY_DIR", "")

DRIVER = "knd.k8s.cni.cncf.io"
NAMESPACE = "knd-system"
NETCONF_API = "knd.k8s.cni.cncf.io/v1alpha1"

# Kinds we ship that are cluster-scoped (must carry no namespace).
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "DeviceClass",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
    "SecurityContextConstraints", "MachineConfig",
}

# knd-driver's documented defaults (docs/deploy.md); `knd-driver --help` overrides them when
# the binary is built, so a changed default in the code is seen.
DRIVER_DEFAULTS = {
    "--kubelet-dir": "/var/lib/kubelet",
    "--state-dir": "/var/lib/knd",
    "--cdi-dir": "/var/run/cdi",
    "--nri-socket": "/var/run/nri/nri.sock",
    "--driver-name": DRIVER,
}


def note_skip(test, why):
    sys.stderr.write(f"SKIPPED {test.id()}: {why}\n")
    test.skipTest(why)


def read(path):
    with open(os.path.join(SRC, path), encoding="utf-8") as f:
        return f.read()


def find_binary(rel):
    """A built binary of this build tree (KND_BINARY_DIR, as ctest sets it); when run by hand
    without it, the newest one in any build*/ tree of the checkout."""
    if BIN:
        cands = [os.path.join(BIN, rel)]
    else:
        cands = sorted(glob.glob(os.path.join(SRC, "build*", rel)), key=os.path.getmtime,
                       reverse=True)
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


@functools.lru_cache(maxsize=None)
def render(kustomization):
    """Objects of `kubectl kustomize deploy/<kustomization>`, or None without kubectl."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    out = subprocess.run([kubectl, "kustomize", os.path.join(SRC, "deploy", kustomization)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize deploy/{kustomization} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def objects_or_skip(test, kustomization):
    objs = render(kustomization)
    if objs is None:
        note_skip(test, "kubectl not found: kustomize rendering not checked")
    return objs


def one(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and
             (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"want exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def yaml_blocks(md_text):
    """(line, text) of every ```yaml fenced block of a Markdown text."""
    blocks, cur, start = [], None, 0
    for i, line in enumerate(md_text.splitlines(), 1):
        if cur is None and line.strip() == "```yaml":
            cur, start = [], i + 1
        elif cur is not None and line.strip() == "```":
            blocks.append((start, "\n".join(cur)))
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


# ---------------------------------------------------------------------------------------
# Which API calls the code makes (the RBAC source of truth).

CLIENT_METHODS = {
    "Get": "get", "List": "list", "Watch": "watch", "Create": "create", "Update": "update",
    "MergePatch": "patch", "Apply": "patch", "Delete": "delete",
    "DeleteCollection": "deletecollection",
}
# Declarations of kube::Client handles: `Client& client_`, `kube::Client* kube`,
# `std::unique_ptr<kube::Client> c`. A bare `Client` counts only outside other namespaces
# (httplib::Client is not ours).
CLIENT_DECL = re.compile(
    r"(?:(?<![\w:])|(?<=kube::))Client\s*[&*]\s*(\w+)"
    r"|(?:unique_ptr|shared_ptr)<\s*(?:knd::)?(?:kube::)?Client\s*>\s*[&*]?\s*(\w+)")
STRING_CONST = re.compile(r"\b(k[A-Z]\w*)\s*(?:\[\])?\s*=\s*\"([^\"]*)\"")
# Helpers that call the API on a path their caller gives them: the helper's own calls are
# skipped and each caller is credited with the verbs, at the path it sets. kube::RunListWatch
# lists and watches ListWatchOptions.path.
DELEGATED_PATH_ARG = "opts.path"
DELEGATING_CALL = re.compile(r"\bRunListWatch\s*\(")
OPTIONS_PATH = re.compile(r"\b\w+\.path\s*=\s*([^;]+);")
DELEGATED_VERBS = ("list", "watch")


def split_top(args):
    """Splits a C++ argument list at top-level commas."""
    parts, depth, cur, quote = [], 0, [], False
    i = 0
    while i < len(args):
        c = args[i]
        if quote:
            cur.append(c)
            if c == "\\":
                cur.append(args[i + 1])
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
            cur.append(c)
        elif c in "([{":
            depth += 1
            cur.append(c)
        elif c in ")]}":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def call_args(text, open_paren):
    """The text between the '(' at open_paren and its matching ')'."""
    depth, quote, i = 0, False, open_paren
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[open_paren + 1:i]
        i += 1
    return text[open_paren + 1:]


def resolve_path(expr, text, pos, consts, depth=0):
    """Best-effort value of a C++ string expression: literals and k-constants are taken, a
    local variable is followed to its last assignment before `pos`, anything else is {x}."""
    expr = expr.strip()
    m = re.fullmatch(r"(?:absl::)?StrCat\((.*)\)", expr, re.S)
    if m:
        return "".join(resolve_path(p, text, pos, consts, depth + 1)
                       for p in split_top(m.group(1)))
    m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', expr)
    if m:
        return m.group(1)
    # A call of a one-line path helper defined in the same file:
    #   std::string ClaimStatusPath(const std::string& ns, ...) { return StrCat(...); }
    m = re.fullmatch(r"(\w+)\((.*)\)", expr, re.S)
    if m and depth < 4:
        d = re.search(r"std::string\s+" + m.group(1) + r"\(([^)]*)\)\s*\{\s*return\s+([^;]+);\s*\}",
                      text)
        if d:
            local = dict(consts)
            for param in split_top(d.group(1)):
                local[re.split(r"[\s&*]+", param.strip())[-1]] = "{x}"
            return resolve_path(d.group(2), text, d.start(), local, depth + 1)
    if expr in consts:
        return consts[expr]
    if re.fullmatch(r"[A-Za-z_]\w*", expr) and depth < 4:
        assigns = [a for a in re.finditer(r"\b" + expr + r"\s*(?<![=!<>])=(?!=)\s*([^;]+);",
                                          text) if a.start() < pos]
        if not assigns:
            assigns = [a for a in re.finditer(r"\b" + expr + r"\s*\{\s*([^;]+)\}\s*;", text)
                       if a.start() < pos]
        if assigns:
            return resolve_path(assigns[-1].group(1), text, assigns[-1].start(), consts,
                                depth + 1)
    return "{x}"


def parse_api_path(path):
    """'/apis/g/v/namespaces/{x}/res/{x}/sub?q' -> (group, 'res' or 'res/sub'), else None."""
    segs = path.split("?")[0].strip("/").split("/")
    if len(segs) >= 3 and segs[0] == "api":
        group, rest = "", segs[2:]
    elif len(segs) >= 4 and segs[0] == "apis":
        group, rest = segs[1], segs[3:]
    else:
        return None
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest or not rest[0] or rest[0] == "{x}":
        return None
    resource = rest[0] + ("/" + rest[2] if len(rest) >= 3 and rest[2] else "")
    return group, resource


def is_test_only(path):
    """Tests, their helpers and fakes: their API calls are not the driver's."""
    return re.search(r"(_test\.cc|_test_util\.h|fake_\w+\.h)$", path) is not None


def api_calls(sources):
    """sources: {path: text}. Returns ({(group, resource, verb): [where]}, [unresolved])."""
    consts = {}
    for text in sources.values():
        consts.update(dict(STRING_CONST.findall(text)))
    used, unresolved = {}, []
    for path, text in sources.items():
        if is_test_only(path):  # test-only code
            continue
        # Handles declared in this file or in its own header.
        unit = text + sources.get(re.sub(r"\.cc$", ".h", path), "")
        receivers = {a or b for a, b in CLIENT_DECL.findall(unit)}
        receivers.discard("")
        if not receivers:
            continue
        call = re.compile(r"\b(" + "|".join(map(re.escape, sorted(receivers))) +
                          r")\s*(?:\.|->)\s*(" + "|".join(CLIENT_METHODS) + r")\s*\(")
        for m in call.finditer(text):
            where = f"{path}:{text.count(chr(10), 0, m.start()) + 1}"
            args = split_top(call_args(text, m.end() - 1))
            if args and args[0].strip() == DELEGATED_PATH_ARG:
                continue  # a delegating helper: its callers are credited below
            value = resolve_path(args[0], text, m.start(), consts) if args else "{x}"
            parsed = parse_api_path(value)
            if parsed is None:
                unresolved.append(f"{where}: {m.group(1)}.{m.group(2)}({args[0] if args else ''})"
                                  f" -> {value!r}")
                continue
            group, resource = parsed
            verb = CLIENT_METHODS[m.group(2)]
            used.setdefault((group, resource, verb), []).append(where)
            # Kubernetes >= 1.36 (DRAResourceClaimGranularStatusAuthorization): writing
            # status.devices of a claim also needs the synthetic resourceclaims/driver
            # permission for this driver on the claim's node (wire-facts §4.3).
            if (group, resource) == ("resource.k8s.io", "resourceclaims/status") and \
                    verb in ("patch", "update"):
                used.setdefault((group, "resourceclaims/driver", "associated-node:" + verb),
                                []).append(where)
    for path, text in sources.items():
        if is_test_only(path) or \
                not DELEGATING_CALL.search(text):
            continue
        for m in OPTIONS_PATH.finditer(text):
            where = f"{path}:{text.count(chr(10), 0, m.start()) + 1}"
            value = resolve_path(m.group(1).strip(), text, m.start(), consts)
            parsed = parse_api_path(value)
            if parsed is None:
                unresolved.append(f"{where}: .path = {m.group(1).strip()} -> {value!r}")
                continue
            for verb in DELEGATED_VERBS:
                used.setdefault((parsed[0], parsed[1], verb), []).append(where)
    return used, unresolved


def code_sources():
    out = {}
    for root in ("src", "cmd"):
        for p in glob.glob(os.path.join(SRC, root, "**", "*"), recursive=True):
            if p.endswith((".cc", ".h")):
                with open(p, encoding="utf-8") as f:
                    out[os.path.relpath(p, SRC)] = f.read()
    return out


def rbac_grants(objs, sa_namespace, sa_name):
    """{(group, resource, verb): resourceNames or None} granted to a service account."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("ClusterRole", "Role")}
    grants = {}
    for b in objs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name and
                   s.get("namespace", b["metadata"].get("namespace")) == sa_namespace
                   for s in b.get("subjects", [])):
            continue
        ref = b["roleRef"]
        ns = None if ref["kind"] == "ClusterRole" else b["metadata"].get("namespace")
        role = roles.get((ref["kind"], ns, ref["name"]))
        assert role is not None, f"{b['kind']} {b['metadata']['name']} refers to missing {ref}"
        for rule in role.get("rules", []):
            for g in rule.get("apiGroups", []):
                for r in rule.get("resources", []):
                    for v in rule.get("verbs", []):
                        grants[(g, r, v)] = rule.get("resourceNames")
    return grants


# ---------------------------------------------------------------------------------------
# What the inventory publishes (DeviceClass CEL and example constraints may use only these).

def published_attributes():
    text = read("src/inventory/slices.cc")
    own = re.findall(r"\bown_(?:str|int|bool)\(\"(\w+)\"", text)
    std = re.findall(r"\bstr\(\"([\w.-]+/\w+)\"", text)
    assert own and std, "no attributes found in src/inventory/slices.cc: the scan rotted"
    return {f"{DRIVER}/{a}" for a in own} | set(std)


def published_device(driver, **values):
    """A device as the DRA CEL sees it, with every attribute the inventory publishes: a value
    of the attribute's type, or values[name]."""
    text = read("src/inventory/slices.cc")
    sample = {"str": "x", "int": 1, "bool": False}
    attrs = {DRIVER: {}}
    for kind, name in re.findall(r"\bown_(str|int|bool)\(\"(\w+)\"", text):
        attrs[DRIVER][name] = values.get(name, sample[kind])
    for full in re.findall(r"\bstr\(\"([\w.-]+/\w+)\"", text):
        domain, name = full.rsplit("/", 1)
        attrs.setdefault(domain, {})[name] = "x"
    if driver != DRIVER:
        attrs[driver] = attrs.pop(DRIVER)
    return {"driver": driver, "attributes": attrs, "capacity": {},
            "allowMultipleAllocations": False}


def cel_attribute_refs(expr):
    refs = re.findall(r'device\.attributes\["([^"]+)"\]\.(\w+)', expr)
    refs += re.findall(r'device\.attributes\["([^"]+)"\]\["(\w+)"\]', expr)
    return {f"{d}/{a}" for d, a in refs}


# ---------------------------------------------------------------------------------------
# NetworkConfig examples.

def kndctl_validate_config():
    """Path of kndctl if it has a validate-config subcommand, else None."""
    kndctl = find_binary("cmd/kndctl/kndctl")
    if not kndctl:
        return None
    out = subprocess.run([kndctl, "--help"], capture_output=True, text=True, timeout=30)
    return kndctl if "validate-config" in out.stdout + out.stderr else None


@functools.lru_cache(maxsize=None)
def documented_netconf_fields():
    """Field paths of the docs/network-config.md reference table ('routes[].gateway')."""
    fields = set(re.findall(r"^\| `([\w.\[\]]+)` \|", read("docs/network-config.md"), re.M))
    assert "interface.name" in fields, "field table of docs/network-config.md not found"
    return fields


# Objects whose keys are passed through to CNI plugins (documented as such) are not checked.
PASSTHROUGH = {"ipam", "cni.config"}


def netconf_field_errors(params):
    fields, errs = documented_netconf_fields(), []
    for key in ("apiVersion", "kind"):
        if key not in params:
            errs.append(f"{key}: missing")
    if params.get("apiVersion", NETCONF_API) != NETCONF_API:
        errs.append(f"apiVersion: want {NETCONF_API}")
    if params.get("kind", "NetworkConfig") != "NetworkConfig":
        errs.append("kind: want NetworkConfig")

    def walk(node, path):
        if path in PASSTHROUGH:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                p = f"{path}.{k}" if path else k
                if p not in fields and not any(f.startswith(p + ".") or f.startswith(p + "[")
                                               for f in fields):
                    errs.append(f"{p}: not a NetworkConfig field (docs/network-config.md)")
                else:
                    walk(v, p)
        elif isinstance(node, list):
            for v in node:
                walk(v, path + "[]")
    walk(params, "")
    return errs


def knd_opaque_configs(obj):
    """NetworkConfig parameters for our driver inside a DeviceClass/claim/template."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "DeviceClass":
        entries = spec.get("config") or []
    elif kind == "ResourceClaim":
        entries = (spec.get("devices") or {}).get("config") or []
    elif kind == "ResourceClaimTemplate":
        entries = ((spec.get("spec") or {}).get("devices") or {}).get("config") or []
    else:
        entries = []
    return [e["opaque"]["parameters"] for e in entries
            if (e.get("opaque") or {}).get("driver") == DRIVER]


def example_documents():
    """(where, object) for deploy/examples/*.yaml and the yaml blocks of docs/deploy.md."""
    docs = []
    for p in sorted(glob.glob(os.path.join(SRC, "deploy", "examples", "*.yaml"))):
        with open(p, encoding="utf-8") as f:
            for i, d in enumerate(yaml.safe_load_all(f)):
                if d is not None:
                    docs.append((f"{os.path.relpath(p, SRC)}#{i}", d))
    for line, text in yaml_blocks(read("docs/deploy.md")):
        for i, d in enumerate(yaml.safe_load_all(text)):
            if d is not None:
                docs.append((f"docs/deploy.md:{line}#{i}", d))
    return docs


# ---------------------------------------------------------------------------------------
# Flags of knd-driver.

def driver_flags_from_source():
    text = read("cmd/knd-driver/main.cc")
    names = set()
    for m in re.finditer(r"add_(?:option|flag)\(\s*\"([^\"]+)\"", text):
        for n in m.group(1).split(","):
            names.add(n.strip())
    assert "--node-name" in names, "no flags found in cmd/knd-driver/main.cc: the scan rotted"
    return names


def driver_help():
    exe = find_binary("cmd/knd-driver/knd-driver")
    if not exe:
        return None
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    return out.stdout


def flag_name(arg):
    return arg.split("=", 1)[0]


def split_flag_args(args):
    """['--a=1', '--b', '2', '--c'] -> {'--a': '1', '--b': '2', '--c': None}."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if "=" in a:
            k, v = a.split("=", 1)
            out[k] = v
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            out[a] = args[i + 1]
            i += 1
        else:
            out[a] = None
        i += 1
    return out


def effective_driver_settings(args):
    settings = dict(DRIVER_DEFAULTS)
    help_text = driver_help()
    if help_text:
        for flag in DRIVER_DEFAULTS:
            # CLI11 prints a default as "--flag TEXT=value" (or "--flag TEXT [value]").
            m = re.search(re.escape(flag) + r"\s+[^\s=]+=(\S+)|" + re.escape(flag) +
                          r"\s+\S+\s+\[([^\]]+)\]", help_text)
            if m:
                settings[flag] = m.group(1) or m.group(2)
    settings.update({k: v for k, v in split_flag_args(args).items() if v is not None})
    return settings


def host_path_of(pod_spec, container, path):
    """The host path a container path resolves to through hostPath mounts, or None."""
    vols = {v["name"]: v for v in pod_spec.get("volumes", [])}
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best[0].rstrip("/")):
                best = (m["mountPath"], m)
    if best is None:
        return None, None
    vol = vols[best[1]["name"]]
    if "hostPath" not in vol:
        return None, vol
    rel = path[len(best[0].rstrip("/")):]
    return vol["hostPath"]["path"].rstrip("/") + rel, vol


# =======================================================================================

class RenderTest(unittest.TestCase):
    def check_objects(self, objs):
        seen = set()
        for o in objs:
            for k in ("apiVersion", "kind", "metadata"):
                self.assertIn(k, o, f"object without {k}: {o}")
            name = o["metadata"].get("name")
            self.assertTrue(name, f"{o['kind']} without metadata.name")
            key = (o["kind"], o["metadata"].get("namespace"), name)
            self.assertNotIn(key, seen, f"duplicate object {key}")
            seen.add(key)
            if o["kind"] in CLUSTER_SCOPED:
                self.assertNotIn("namespace", o["metadata"],
                                 f"cluster-scoped {o['kind']} {name} has a namespace")
            else:
                self.assertEqual(o["metadata"].get("namespace"), NAMESPACE,
                                 f"{o['kind']} {name} is not in {NAMESPACE}")

    def test_base_renders(self):
        objs = objects_or_skip(self, "base")
        self.check_objects(objs)
        kinds = {o["kind"] for o in objs}
        for want in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                     "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
                     "DaemonSet", "ConfigMap", "DeviceClass"):
            self.assertIn(want, kinds)

    def test_openshift_renders(self):
        objs = objects_or_skip(self, "overlays/openshift")
        self.check_objects(objs)
        base = {(o["kind"], o["metadata"]["name"]) for o in objects_or_skip(self, "base")}
        got = {(o["kind"], o["metadata"]["name"]) for o in objs}
        self.assertLessEqual(base, got, "the overlay lost objects of the base")
        self.assertIn("SecurityContextConstraints", {k for k, _ in got})
        self.assertIn("MachineConfig", {k for k, _ in got})

    def test_before_136_leaves_out_exactly_the_mutating_policies(self):
        def keys(objs):
            return {(o["kind"], o["metadata"]["name"]) for o in objs}
        mutating = {("MutatingAdmissionPolicy", n) for n in ("knd-pod-claim-templates",
                                                            "knd-pod-claims")}
        mutating |= {("MutatingAdmissionPolicyBinding", n) for _, n in mutating}
        base = objects_or_skip(self, "base")
        self.assertLessEqual(mutating, keys(base))
        pre = objects_or_skip(self, "overlays/pre-1.36")
        self.check_objects(pre)
        self.assertEqual(keys(pre), keys(base) - mutating)
        # The component on top of the OpenShift overlay, as docs/deploy.md shows it.
        with tempfile.TemporaryDirectory() as d:
            rel = os.path.relpath(os.path.join(SRC, "deploy"), d)
            doc = next(yaml.safe_load(t) for _, t in yaml_blocks(read("docs/deploy.md"))
                       if "components/before-1.36" in t)
            for k in ("resources", "components"):  # "knd/" is the checkout
                doc[k] = [re.sub(r"^knd/deploy", rel, e) for e in doc[k]]
            with open(os.path.join(d, "kustomization.yaml"), "w") as f:
                yaml.safe_dump(doc, f)
            out = subprocess.run(["kubectl", "kustomize", d], capture_output=True, text=True,
                                 timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        got = keys(d for d in yaml.safe_load_all(out.stdout) if d)
        self.assertEqual(got, keys(objects_or_skip(self, "overlays/openshift")) - mutating)


class KustomizationTest(unittest.TestCase):
    def test_every_manifest_is_used(self):
        # A manifest file that no kustomization names is silently not installed.
        for d in ("deploy/base", "deploy/overlays/openshift"):
            k = yaml.safe_load(read(f"{d}/kustomization.yaml"))
            used = set(k.get("resources", []))
            used |= {p["path"] for p in k.get("patches", []) if "path" in p}
            for g in k.get("configMapGenerator", []):
                used |= {f.split("=", 1)[-1] for f in g.get("files", [])}
            for f in sorted(os.listdir(os.path.join(SRC, d))):
                if f.endswith(".yaml") and f != "kustomization.yaml":
                    self.assertIn(f, used, f"{d}/{f} is not part of {d}/kustomization.yaml")


class DaemonSetTest(unittest.TestCase):
    def setUp(self):
        self.objs = objects_or_skip(self, "base")
        self.ds = one(self.objs, "DaemonSet", "knd-driver")
        self.pod = self.ds["spec"]["template"]["spec"]
        self.c = self.pod["containers"][0]
        self.args = self.c.get("args", [])

    def test_args_use_only_flags_knd_driver_defines(self):
        flags = driver_flags_from_source()
        for a in self.args:
            self.assertTrue(a.startswith("-"), f"positional argument {a!r}: knd-driver takes none")
            self.assertIn(flag_name(a), flags,
                          f"DaemonSet passes {flag_name(a)} but cmd/knd-driver/main.cc does not "
                          f"define it")
        help_text = driver_help()
        if help_text is None:
            sys.stderr.write("NOTE: knd-driver not built: flags checked against the source only\n")
        else:
            for a in self.args:
                self.assertIn(flag_name(a), help_text, f"`knd-driver --help` lacks {a}")

    def test_entrypoint_is_knd_driver(self):
        # No command in the DaemonSet: the image's entrypoint must be knd-driver.
        self.assertNotIn("command", self.c)
        m = re.search(r"^ENTRYPOINT\s+(\[.*\])", read("Containerfile"), re.M)
        self.assertIsNotNone(m, "Containerfile has no exec-form ENTRYPOINT")
        self.assertEqual(yaml.safe_load(m.group(1))[-1], "/usr/bin/knd-driver")

    def test_host_paths_cover_sockets_and_state(self):
        s = effective_driver_settings(self.args)
        kubelet, driver = s["--kubelet-dir"], s["--driver-name"]
        # Paths that other host components use by name (kubelet dials the sockets we report,
        # the runtime reads CDI specs and serves NRI) must be mounted at the same path.
        same_path = {
            "registration socket": f"{kubelet}/plugins_registry/{driver}-reg.sock",
            "DRA socket": f"{kubelet}/plugins/{driver}/dra.sock",
            "CDI spec dir": s["--cdi-dir"] + "/knd.json",
            "NRI socket": s["--nri-socket"],
            "state dir": s["--state-dir"] + "/plans",
            "pod netns": "/var/run/netns/cni-0000",
        }
        # The runtime runs the netns guard from the host by the path in the CDI spec.
        if s.get("--netns-guard"):
            same_path["netns guard"] = s["--netns-guard"]
        for what, path in same_path.items():
            host, vol = host_path_of(self.pod, self.c, path)
            self.assertEqual(host, path, f"{what} {path} is not on a same-path hostPath mount")
        # Directories must not be read-only where we write.
        for m in self.c["volumeMounts"]:
            if m["name"] in ("plugins-registry", "plugins", "nri", "cdi", "state"):
                self.assertFalse(m.get("readOnly", False), f"{m['name']} is read-only")
        netns = [m for m in self.c["volumeMounts"] if m["mountPath"] == "/var/run/netns"][0]
        self.assertEqual(netns.get("mountPropagation"), "HostToContainer",
                         "pod netns created after start would be invisible")
        host, _ = host_path_of(self.pod, self.c, "/sys/class/net")
        self.assertEqual(host, "/sys/class/net")

    def test_config_comes_from_the_configmap(self):
        path = split_flag_args(self.args).get("--config")
        self.assertTrue(path, "no --config")
        _, vol = host_path_of(self.pod, self.c, path)
        self.assertIsNotNone(vol, f"--config {path} is not on a mounted volume")
        self.assertIn("configMap", vol)
        cm = one(self.objs, "ConfigMap", vol["configMap"]["name"])
        key = os.path.basename(path)
        self.assertIn(key, cm["data"], f"ConfigMap {cm['metadata']['name']} lacks {key}")
        self.assertIsInstance(yaml.safe_load(cm["data"][key]), dict)

    def test_node_config_decodes(self):
        text = read("deploy/base/node-config.yaml")
        kndctl = find_binary("cmd/kndctl/kndctl")
        if kndctl is None:
            keys = set(yaml.safe_load(text))
            self.assertLessEqual(keys, {"driverName", "include", "exclude", "resourceNames",
                                        "includeUplinks"})
            note_skip(self, "kndctl not built: node config checked for top-level keys only")
        # The real decoder (strict: unknown keys and wrong types fail).
        out = subprocess.run([kndctl, "inventory", "--config",
                              os.path.join(SRC, "deploy/base/node-config.yaml"),
                              "--node-name", "deploy-test"],
                             capture_output=True, text=True, timeout=60)
        # Exit code 2 is kndctl's "bad config"; 1 would be a scan problem of this machine.
        self.assertNotEqual(out.returncode, 2, out.stderr)
        self.assertNotIn("INVALID_ARGUMENT", out.stderr, out.stderr)

    def test_security_context(self):
        self.assertTrue(self.pod.get("hostNetwork"))
        self.assertEqual(self.pod.get("dnsPolicy"), "ClusterFirstWithHostNet")
        self.assertFalse(self.pod.get("hostPID", False))
        self.assertFalse(self.pod.get("hostIPC", False))
        sc = self.c["securityContext"]
        self.assertFalse(sc.get("privileged", False))
        self.assertTrue(sc.get("readOnlyRootFilesystem"))
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(set(sc["capabilities"]["add"]), {"NET_ADMIN", "SYS_ADMIN"})
        # The API server refuses this combination (pod validation).
        self.assertFalse(sc.get("allowPrivilegeEscalation") is False and
                         "SYS_ADMIN" in sc["capabilities"]["add"],
                         "allowPrivilegeEscalation: false with SYS_ADMIN is rejected")

    def test_scheduling_and_rollout(self):
        self.assertEqual(self.pod.get("priorityClassName"), "system-node-critical")
        self.assertTrue(any(t.get("operator") == "Exists" and "key" not in t
                            and "effect" not in t for t in self.pod.get("tolerations", [])),
                        "must tolerate every taint")
        ru = self.ds["spec"]["updateStrategy"]
        self.assertEqual(ru["type"], "RollingUpdate")
        self.assertEqual(ru["rollingUpdate"]["maxUnavailable"], 1)
        self.assertEqual(ru["rollingUpdate"].get("maxSurge", 0), 0)
        sel = self.ds["spec"]["selector"]["matchLabels"]
        labels = self.ds["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(all(labels.get(k) == v for k, v in sel.items()))

    def test_node_name_and_service_account(self):
        env = {e["name"]: e for e in self.c.get("env", [])}
        self.assertEqual(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
        one(self.objs, "ServiceAccount", self.pod["serviceAccountName"])

    def test_probes_hit_the_metrics_address(self):
        addr = split_flag_args(self.args).get("--metrics-address")
        self.assertTrue(addr, "no --metrics-address: probes would have nothing to reach")
        host, _, port = addr.rpartition(":")
        self.assertIn(host, ("", "0.0.0.0", "[::]"),
                      "kubelet probes go to the node IP under hostNetwork; a loopback address "
                      "would fail them")
        ports = {p["name"]: p["containerPort"] for p in self.c.get("ports", [])}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = self.c[probe]["httpGet"]
            self.assertEqual(get["path"], path)
            self.assertEqual(ports.get(get["port"], get["port"]), int(port))


class RbacTest(unittest.TestCase):
    def test_scanner_on_known_code(self):
        # The scanner itself, on code whose calls are known.
        used, unresolved = api_calls({
            "src/x/a.h": 'inline constexpr char kSlices[] = '
                         '"/apis/resource.k8s.io/v1/resourceslices";\n'
                         "class A { kube::Client& kube_; httplib::Client& http_; };",
            "src/x/a.cc": '\n'.join([
                'void A::F() {',
                '  kube_.List(kSlices, lo);',
                '  kube_.Delete(absl::StrCat(kSlices, "/", n));',
                '  const std::string path = absl::StrCat("/apis/resource.k8s.io/v1/namespaces/",',
                '      ns, "/resourceclaims/", name, "/status");',
                '  kube_.Apply(path, obj, "knd");',
                '  kube_.Get(absl::StrCat("/api/v1/namespaces/", ns, "/pods/", p.name));',
                '  http_.Get("/not/kube");',
                '  kube_.Update(WeirdPath(x), obj);',
                '  kube_.MergePatch(NodePath(node_), p);',
                '}',
                'std::string NodePath(const std::string& node) {',
                '  return absl::StrCat("/api/v1/nodes/", node);',
                '}']),
            "src/x/a_test.cc": 'kube_.Create("/api/v1/namespaces/x/secrets", o);',
            "src/x/b_test_util.h": "class F { kube::Client& real_; "
                                   "void G(const std::string& p) { real_.Get(p); } };",
            # A delegating helper and its caller: the caller gets list+watch at its path.
            "src/x/lw.cc": "void RunLw(Client& client, const O& opts) {\n"
                           "  client.List(opts.path, lo);\n  client.Watch(opts.path, wo); }",
            "src/x/c.cc": 'constexpr char kNodes[] = "/api/v1/nodes";\n'
                          "void C::Loop() { lw.path = kNodes; RunListWatch(client_, lw, h, s); }",
        })
        self.assertEqual(set(used), {
            ("resource.k8s.io", "resourceslices", "list"),
            ("resource.k8s.io", "resourceslices", "delete"),
            ("resource.k8s.io", "resourceclaims/status", "patch"),
            ("resource.k8s.io", "resourceclaims/driver", "associated-node:patch"),
            ("", "pods", "get"),
            ("", "nodes", "patch"),
            ("", "nodes", "list"),
            ("", "nodes", "watch"),
        })
        self.assertEqual(len(unresolved), 1)
        self.assertIn("WeirdPath", unresolved[0])

    def test_cluster_role_matches_code(self):
        objs = objects_or_skip(self, "base")
        ds = one(objs, "DaemonSet", "knd-driver")
        sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
        used, unresolved = api_calls(code_sources())
        self.assertEqual(unresolved, [], "API calls whose path the scanner cannot resolve; "
                         "use a path literal/constant or teach test_deploy.py the pattern")
        self.assertTrue(used, "no API calls found in src/ and cmd/: the scan rotted")
        grants = rbac_grants(objs, ds["metadata"]["namespace"], sa)
        for (g, r, v), names in grants.items():
            self.assertNotIn("*", (g, r, v), f"wildcard grant {(g, r, v)}")
        missing = sorted(k for k in used if k not in grants)
        extra = sorted(k for k in grants if k not in used)
        self.assertEqual(missing, [], "code calls these but RBAC does not grant them: " +
                         "; ".join(f"{k} at {used[k][0]}" for k in missing))
        self.assertEqual(extra, [], "RBAC grants these but no code in src/ or cmd/ uses them")
        for (g, r, v), names in grants.items():
            if r == "resourceclaims/driver":
                self.assertEqual(names, [DRIVER], "resourceclaims/driver must be limited to "
                                 "resourceNames: [the driver name]")


# ---------------------------------------------------------------------------------------
# CEL: the admission policies and DeviceClass selectors are evaluated with cel-go (the CEL of
# the API server), built by test/deploy/celeval.sh from Debian's sources.

@functools.lru_cache(maxsize=None)
def celeval_build():
    """(path of the celeval binary, None), or (None, why) when its fixtures cannot be fetched.
    A build error fails the tests instead: that is our bug, not the machine's."""
    out_dir = os.path.join(BIN or os.path.join(SRC, "build"), "celeval")
    r = subprocess.run([os.path.join(SRC, "test", "deploy", "celeval.sh"), out_dir],
                       capture_output=True, text=True, timeout=900)
    if r.returncode == 3:
        return None, "cel-go/go-1.23 fixtures unavailable: " + r.stderr.strip()[-500:]
    if r.returncode != 0:
        raise AssertionError(f"test/deploy/celeval.sh failed ({r.returncode}):\n{r.stderr}")
    return r.stdout.strip().splitlines()[-1], None


def celeval_or_skip(test):
    path, why = celeval_build()
    if path is None:
        note_skip(test, why)
    return path


def celeval(test, doc):
    """Runs the evaluator on one input document (see test/deploy/celeval/main.go)."""
    r = subprocess.run([celeval_or_skip(test)], input=json.dumps(doc), capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"celeval failed ({r.returncode}): {r.stderr}")
    return json.loads(r.stdout)


def knd_user(objs):
    ds = one(objs, "DaemonSet", "knd-driver")
    return (f"system:serviceaccount:{ds['metadata']['namespace']}:"
            f"{ds['spec']['template']['spec']['serviceAccountName']}")


NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


class AdmissionPolicyTest(unittest.TestCase):
    """Requests as the API server would hand them to the policies, and what the policies
    answer, evaluated with cel-go."""

    def setUp(self):
        self.objs = objects_or_skip(self, "base")
        celeval_or_skip(self)
        self.user = knd_user(self.objs)

    def policy(self, name):
        pol = one(self.objs, "ValidatingAdmissionPolicy", name)
        self.assertEqual(pol["spec"]["failurePolicy"], "Fail")
        binding = one(self.objs, "ValidatingAdmissionPolicyBinding", name)
        self.assertEqual(binding["spec"]["policyName"], name)
        self.assertEqual(binding["spec"]["validationActions"], ["Deny"])
        self.assertNotIn("paramRef", binding["spec"])
        return pol["spec"]

    def admit(self, policy, op, resource, obj=None, old=None, node="node-a", user=None,
              sub=""):
        group, version, res = resource
        extra = {NODE_NAME_EXTRA: [node]} if node else {}
        request = {"operation": op,
                   "resource": {"group": group, "version": version, "resource": res},
                   "subResource": sub,
                   "userInfo": {"username": user or self.user, "extra": extra}}
        return celeval(self, {"policy": self.policy(policy), "request": request,
                              "object": obj, "oldObject": old})

    def assertAllowed(self, r):
        self.assertEqual(r, {"applies": True, "allowed": True, "message": ""})

    def assertDenied(self, r, message):
        self.assertTrue(r["applies"], r)
        self.assertFalse(r["allowed"], r)
        self.assertIn(message, r["message"])

    def assertNotMatched(self, r):
        self.assertEqual(r, {"applies": False, "allowed": True, "message": ""})

    # ResourceSlices --------------------------------------------------------------------

    SLICES = ("resource.k8s.io", "v1", "resourceslices")

    @staticmethod
    def slice(node="node-a", driver=DRIVER):
        return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
                "metadata": {"name": f"{node}-knd-x"},
                "spec": {"driver": driver, "nodeName": node,
                         "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                         "devices": [{"name": "eth1"}]}}

    def slices(self, op, obj=None, old=None, **kw):
        return self.admit("knd-resourceslices", op, self.SLICES, obj, old, **kw)

    def test_slices_own_node_allowed(self):
        self.assertAllowed(self.slices("CREATE", self.slice()))
        self.assertAllowed(self.slices("UPDATE", self.slice(), self.slice()))
        self.assertAllowed(self.slices("DELETE", None, self.slice()))
        for v in ("v1beta1", "v1beta2"):
            self.assertTrue(self.admit("knd-resourceslices", "CREATE",
                                       ("resource.k8s.io", v, "resourceslices"),
                                       self.slice())["applies"])

    def test_slices_other_node_denied(self):
        want = ('knd on node node-a may only write ResourceSlices with spec.nodeName node-a, '
                'not "node-b"')
        self.assertDenied(self.slices("CREATE", self.slice("node-b")), want)
        self.assertDenied(self.slices("UPDATE", self.slice("node-b"), self.slice("node-b")),
                          want)
        # DELETE has no object: the node must come from oldObject.
        self.assertDenied(self.slices("DELETE", None, self.slice("node-b")), want)

    def test_slices_token_without_node_denied(self):
        self.assertDenied(self.slices("CREATE", self.slice(), node=None),
                          "no node is associated with this knd service-account token")
        self.assertDenied(self.slices("DELETE", None, self.slice(), node=""),
                          "no node is associated")

    def test_slices_other_driver_denied(self):
        self.assertDenied(self.slices("CREATE", self.slice(driver="gpu.example.com")),
                          f'knd may only write ResourceSlices of driver {DRIVER}, not '
                          '"gpu.example.com"')
        self.assertDenied(self.slices("DELETE", None, self.slice(driver="gpu.example.com")),
                          "not \"gpu.example.com\"")

    def test_slices_policy_matches_only_knd(self):
        self.assertNotMatched(self.slices("CREATE", self.slice("node-b"),
                                          user="system:serviceaccount:kube-system:other"))
        self.assertNotMatched(self.slices("CREATE", self.slice("node-b"),
                                          user="system:node:node-b"))
        self.assertNotMatched(self.admit("knd-resourceslices", "UPDATE",
                                         ("resource.k8s.io", "v1", "resourceclaims"),
                                         {"spec": {}}, {"spec": {}}, sub="status"))

    # Pods ------------------------------------------------------------------------------

    PODS = ("", "v1", "pods")

    @staticmethod
    def pod(node="node-a", status='[{"name": "cbr0", "default": true}]'):
        md = {"name": "web-0", "namespace": "apps", "uid": "9b1f", "resourceVersion": "41",
              "labels": {"app": "web"},
              "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
              "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                   "name": "web", "uid": "77aa", "controller": True}],
              "managedFields": [{"manager": "kube-controller-manager",
                                 "operation": "Update"}]}
        if status is not None:
            md["annotations"][NETWORK_STATUS] = status
        spec = {"containers": [{"name": "web", "image": "nginx:1.27",
                                "resources": {"limits": {"cpu": "1"}}}],
                "resourceClaims": [{"name": "nic", "resourceClaimName": "web-0-nic"}],
                "terminationGracePeriodSeconds": 30}
        if node is not None:
            spec["nodeName"] = node
        return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec,
                "status": {"phase": "Running"}}

    def patched(self, old, status):
        """old as knd's merge patch of the network-status annotation leaves it (None:
        removed), with the bookkeeping the API server does on every write."""
        new = copy.deepcopy(old)
        ann = new["metadata"]["annotations"]
        if status is None:
            ann.pop(NETWORK_STATUS, None)
        else:
            ann[NETWORK_STATUS] = status
        new["metadata"]["managedFields"].append({"manager": "knd-driver",
                                                 "operation": "Update"})
        return new

    def pods(self, op, obj=None, old=None, **kw):
        return self.admit("knd-pods", op, self.PODS, obj, old, **kw)

    KND_STATUS = ('[{"name": "cbr0", "default": true}, '
                  '{"name": "knd.k8s.cni.cncf.io/web-0-nic", "interface": "net1"}]')

    def test_pods_network_status_on_own_node_allowed(self):
        old = self.pod()
        self.assertAllowed(self.pods("UPDATE", self.patched(old, self.KND_STATUS), old))
        # First entry (no annotation yet), and knd's last entry gone (annotation removed:
        # knd's merge patch sets it to null then).
        bare = self.pod(status=None)
        self.assertAllowed(self.pods("UPDATE", self.patched(bare, self.KND_STATUS), bare))
        self.assertAllowed(self.pods("UPDATE", self.patched(old, None), old))
        # A pod without labels or annotations at all.
        plain = self.pod(status=None)
        del plain["metadata"]["labels"], plain["metadata"]["annotations"]
        new = self.patched({**plain, "metadata": {**plain["metadata"], "annotations": {}}},
                           self.KND_STATUS)
        self.assertAllowed(self.pods("UPDATE", new, plain))
        self.assertAllowed(self.pods("UPDATE", plain, new))

    def test_pods_other_node_denied(self):
        old = self.pod("node-b")
        self.assertDenied(self.pods("UPDATE", self.patched(old, self.KND_STATUS), old),
                          'knd on node node-a may only write pods of node node-a, not pod '
                          'apps/web-0 (spec.nodeName "node-b")')
        unscheduled = self.pod(None)
        self.assertDenied(self.pods("UPDATE", self.patched(unscheduled, self.KND_STATUS),
                                    unscheduled), '(spec.nodeName "")')

    def test_pods_token_without_node_denied(self):
        old = self.pod()
        self.assertDenied(self.pods("UPDATE", self.patched(old, self.KND_STATUS), old,
                                    node=None),
                          "no node is associated with this knd service-account token")

    def test_pods_label_change_denied(self):
        old = self.pod()
        for labels in ({"app": "evil"}, {"app": "web", "extra": "1"}, {}):
            new = self.patched(old, self.KND_STATUS)
            new["metadata"]["labels"] = labels
            self.assertDenied(self.pods("UPDATE", new, old),
                              "knd may only change the annotation "
                              f"{NETWORK_STATUS} of pod apps/web-0, not metadata.labels")
        new = self.patched(old, old["metadata"]["annotations"][NETWORK_STATUS])
        del new["metadata"]["labels"]
        self.assertDenied(self.pods("UPDATE", new, old), "not metadata.labels")

    def test_pods_other_metadata_denied(self):
        old = self.pod()
        new = self.patched(old, self.KND_STATUS)
        new["metadata"]["finalizers"] = ["example.com/keep"]
        new["metadata"]["ownerReferences"] = []
        r = self.pods("UPDATE", new, old)
        self.assertDenied(r, "of pod apps/web-0, not metadata.")
        # Both named, in the order of a map's keys (i.e. any).
        self.assertIn("metadata.finalizers", r["message"])
        self.assertIn("metadata.ownerReferences", r["message"])

    def test_pods_other_annotation_denied(self):
        old = self.pod()
        want = (f"knd may only change the annotation {NETWORK_STATUS} of pod apps/web-0, not "
                "the annotation ")
        changed = self.patched(old, self.KND_STATUS)
        changed["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = "now"
        self.assertDenied(self.pods("UPDATE", changed, old),
                          want + "kubectl.kubernetes.io/restartedAt")
        added = self.patched(old, self.KND_STATUS)
        added["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] = "evil"
        self.assertDenied(self.pods("UPDATE", added, old), want + "k8s.v1.cni.cncf.io/networks")
        removed = self.patched(old, self.KND_STATUS)
        del removed["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        self.assertDenied(self.pods("UPDATE", removed, old),
                          want + "kubectl.kubernetes.io/restartedAt")

    def test_pods_spec_change_denied(self):
        old = self.pod()
        new = self.patched(old, self.KND_STATUS)
        new["spec"]["containers"][0]["image"] = "evil:latest"
        self.assertDenied(self.pods("UPDATE", new, old),
                          "knd may not change the spec of pod apps/web-0")
        moved = self.patched(old, self.KND_STATUS)
        moved["spec"]["tolerations"] = [{"operator": "Exists"}]
        self.assertDenied(self.pods("UPDATE", moved, old), "spec of pod apps/web-0")

    def test_pods_policy_matches_only_knd_pod_updates(self):
        old = self.pod("node-b")
        new = self.patched(old, self.KND_STATUS)
        new["metadata"]["labels"] = {}
        for user in ("system:serviceaccount:kube-system:multus", "system:node:node-b",
                     "system:serviceaccount:other-ns:knd"):
            self.assertNotMatched(self.pods("UPDATE", new, old, user=user))
        # Not matched because RBAC gives knd none of these: checked here against the role.
        self.assertNotMatched(self.pods("CREATE", new))
        self.assertNotMatched(self.pods("DELETE", None, old))
        self.assertNotMatched(self.pods("UPDATE", new, old, sub="status"))
        role = one(self.objs, "ClusterRole", "knd-driver")
        for rule in role["rules"]:
            if "" not in rule["apiGroups"]:
                continue
            for res in rule["resources"]:
                self.assertFalse(res.startswith("pods/"), f"knd-driver grants {res}: the "
                                 "knd-pods policy does not match pod subresources")
                if res == "pods":
                    self.assertEqual(set(rule["verbs"]) & {"create", "delete",
                                                           "deletecollection", "*"}, set(),
                                     "knd-pods matches only UPDATE of pods")

    # The evaluator itself --------------------------------------------------------------

    def test_evaluator_catches_broken_expressions(self):
        bad = {"policy": {"matchConstraints": {"resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
             "resources": ["pods"]}]},
            "validations": [{"expression": "object.spec == oldObject.spec &&"}]},
            "request": {"operation": "UPDATE",
                        "resource": {"group": "", "version": "v1", "resource": "pods"}},
            "object": {}, "oldObject": {}}
        r = subprocess.run([celeval_or_skip(self)], input=json.dumps(bad),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("object.spec == oldObject.spec &&", r.stderr)
        bad["policy"]["validations"] = [{"expression": "variables.missing == 1"}]
        res = celeval(self, bad)
        self.assertFalse(res["allowed"])
        self.assertIn("resulted in error", res["message"])

ALL_CONTAINERS_LABEL = "knd.k8s.cni.cncf.io/all-containers"
REQUIRED_PLUGINS = "required-plugins.noderesource.dev/pod"  # NRI's default validator


def claim_template(name, classes, ns="apps", labels=None, first_available=False):
    """A ResourceClaimTemplate with one request per DeviceClass of `classes` (or one
    firstAvailable request with a subrequest per class)."""
    if first_available:
        reqs = [{"name": "nic", "firstAvailable": [
            {"name": f"s{i}", "deviceClassName": c} for i, c in enumerate(classes)]}]
    else:
        reqs = [{"name": f"r{i}", "exactly": {"deviceClassName": c}}
                for i, c in enumerate(classes)]
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": meta, "spec": {"spec": {"devices": {"requests": reqs}}}}


def claim_of(template, name=None):
    """The ResourceClaim a template would make (same name unless `name`)."""
    c = copy.deepcopy(template)
    c["kind"] = "ResourceClaim"
    c["spec"] = c["spec"]["spec"]
    if name:
        c["metadata"]["name"] = name
    return c


def claims_by_container(pod):
    """{container name: [claim entries]} over init containers and containers."""
    spec = pod["spec"]
    return {c["name"]: c.get("resources", {}).get("claims", [])
            for c in spec.get("initContainers", []) + spec["containers"]}


class PodClaimsPolicyTest(unittest.TestCase):
    """deploy/base/pod-claims-policy.yaml: every container and init container of a new pod
    lists the pod's knd claims (so the kubelet gives each one knd's CDI devices and with them
    the netns guard). Evaluated with cel-go on pods as the API server would admit them, with
    the namespace's ResourceClaimTemplates and ResourceClaims as the binding's params."""

    PODS = ("", "v1", "pods")

    def setUp(self):
        self.objs = objects_or_skip(self, "base")
        celeval_or_skip(self)

    def policy(self, name):
        pol = one(self.objs, "MutatingAdmissionPolicy", name)
        binding = one(self.objs, "MutatingAdmissionPolicyBinding", name)
        self.assertEqual(pol["apiVersion"], "admissionregistration.k8s.io/v1")
        self.assertEqual(pol["spec"]["failurePolicy"], "Fail")
        self.assertEqual(binding["spec"]["policyName"], name)
        return pol["spec"], binding["spec"]

    def admit(self, pod, params, op="CREATE", ns="apps"):
        """The pod after both policies, as the API server runs them in turn."""
        for name in ("knd-pod-claim-templates", "knd-pod-claims"):
            spec, binding = self.policy(name)
            r = celeval(self, {
                "mutatingPolicy": spec, "binding": binding, "params": params,
                "request": {"operation": op, "namespace": ns,
                            "resource": {"group": "", "version": "v1", "resource": "pods"}},
                "object": pod})
            self.assertTrue(r["allowed"], r["message"])
            pod = r["object"]
        return pod

    @staticmethod
    def pod(claims, containers=("app",), init=(), existing=None, ns="apps"):
        """A pod with pod-level `claims` ({name: ("template"|"claim", object name)})."""
        existing = existing or {}

        def ctr(n):
            c = {"name": n, "image": "registry.example.com/app:1"}
            if n in existing:
                c["resources"] = {"claims": existing[n]}
            return c
        spec = {"resourceClaims": [
            {"name": n, ("resourceClaimTemplateName" if kind == "template"
                         else "resourceClaimName"): obj}
            for n, (kind, obj) in claims.items()],
            "containers": [ctr(n) for n in containers]}
        if init:
            spec["initContainers"] = [ctr(n) for n in init]
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-0", "namespace": ns}, "spec": spec}

    def test_pod_level_claim_reaches_every_container(self):
        pod = self.pod({"net": ("template", "nic")}, containers=("app", "sidecar"),
                       init=("setup",))
        out = self.admit(pod, [claim_template("nic", ["knd-nic"])])
        self.assertEqual(claims_by_container(out), {
            "setup": [{"name": "net"}], "app": [{"name": "net"}], "sidecar": [{"name": "net"}]})
        # The runtime's own check, where NRI's default validator is on.
        self.assertEqual(out["metadata"]["annotations"], {REQUIRED_PLUGINS: '["knd"]'})
        # Nothing else of the pod changed.
        for c in out["spec"]["initContainers"] + out["spec"]["containers"]:
            del c["resources"]
        del out["metadata"]["annotations"]
        self.assertEqual(out, pod)

    def test_required_plugins_annotation_of_the_pod_kept(self):
        params = [claim_template("nic", ["knd-nic"])]
        for key in (REQUIRED_PLUGINS, "required-plugins.noderesource.dev"):
            pod = self.pod({"net": ("template", "nic")})
            pod["metadata"]["annotations"] = {key: '["other"]', "team": "a"}
            out = self.admit(pod, params)
            self.assertEqual(out["metadata"]["annotations"], {key: '["other"]', "team": "a"})
            self.assertEqual(claims_by_container(out)["app"], [{"name": "net"}])
        pod = self.pod({"net": ("template", "nic")})
        pod["metadata"]["annotations"] = {"team": "a"}
        self.assertEqual(self.admit(pod, params)["metadata"]["annotations"],
                         {"team": "a", REQUIRED_PLUGINS: '["knd"]'})

    def test_several_claims_and_request_entries_kept(self):
        pod = self.pod({"net": ("template", "nic"), "rdma": ("template", "rdma")},
                       containers=("app", "worker"),
                       existing={"app": [{"name": "rdma", "request": "r0"}]})
        out = self.admit(pod, [claim_template("nic", ["knd-nic"]),
                               claim_template("rdma", ["knd-rdma"])])
        got = claims_by_container(out)
        self.assertEqual(got["app"], [{"name": "rdma", "request": "r0"}, {"name": "net"}])
        self.assertEqual(sorted(e["name"] for e in got["worker"]), ["net", "rdma"])

    def test_first_available_subrequests(self):
        pod = self.pod({"net": ("template", "nic")})
        out = self.admit(pod, [claim_template("nic", ["knd-rdma", "knd-nic"],
                                              first_available=True)])
        self.assertEqual(claims_by_container(out)["app"], [{"name": "net"}])

    def test_other_drivers_and_mixed_claims_untouched(self):
        pod = self.pod({"gpu": ("template", "gpu"), "both": ("template", "gpu-and-nic"),
                        "alt": ("template", "gpu-or-nic")})
        params = [claim_template("gpu", ["gpu.nvidia.com"]),
                  claim_template("gpu-and-nic", ["gpu.nvidia.com", "knd-nic"]),
                  claim_template("gpu-or-nic", ["gpu.nvidia.com", "knd-nic"],
                                 first_available=True)]
        self.assertEqual(self.admit(pod, params), pod)

    def test_label_overrides_the_classes(self):
        pod = self.pod({"mine": ("template", "custom"), "off": ("template", "nic")})
        params = [claim_template("custom", ["sriov-vf"], labels={ALL_CONTAINERS_LABEL: "true"}),
                  claim_template("nic", ["knd-nic"], labels={ALL_CONTAINERS_LABEL: "false"})]
        self.assertEqual(claims_by_container(self.admit(pod, params))["app"],
                         [{"name": "mine"}])

    def test_named_resource_claim(self):
        pod = self.pod({"net": ("claim", "shared-nic")}, init=("setup",))
        claim = claim_of(claim_template("x", ["knd-nic"]), name="shared-nic")
        out = self.admit(pod, [claim, claim_template("shared-nic", ["gpu.nvidia.com"])])
        self.assertEqual(claims_by_container(out),
                         {"setup": [{"name": "net"}], "app": [{"name": "net"}]})

    def test_params_of_other_namespaces_ignored(self):
        pod = self.pod({"net": ("template", "nic")})
        self.assertEqual(self.admit(pod, [claim_template("nic", ["knd-nic"], ns="other")]), pod)
        self.assertEqual(self.admit(pod, []), pod)  # no templates at all: allowed as it is

    def test_reinvocation_changes_nothing(self):
        pod = self.pod({"net": ("template", "nic")}, containers=("app", "proxy"))
        params = [claim_template("nic", ["knd-nic"])]
        once = self.admit(pod, params)
        self.assertEqual(self.admit(once, params), once)
        # A container a later webhook adds gets the claim when the policy runs again.
        once["spec"]["containers"].append({"name": "injected", "image": "x"})
        self.assertEqual(claims_by_container(self.admit(once, params))["injected"],
                         [{"name": "net"}])

    def test_pods_without_claims_and_updates_not_matched(self):
        params = [claim_template("nic", ["knd-nic"])]
        plain = self.pod({})
        del plain["spec"]["resourceClaims"]
        self.assertEqual(self.admit(plain, params), plain)
        pod = self.pod({"net": ("template", "nic")})
        self.assertEqual(self.admit(pod, params, op="UPDATE"), pod)

    def test_examples_reach_every_container(self):
        docs = [d for _, d in example_documents()]
        params = [d for d in docs if d.get("kind") in ("ResourceClaimTemplate", "ResourceClaim")]
        knd_params = {(p["kind"], p["metadata"]["name"]) for p in params
                      if all(r.get("exactly", {}).get("deviceClassName", "").startswith("knd-")
                             for r in (p["spec"]["spec"] if p["kind"] == "ResourceClaimTemplate"
                                       else p["spec"])["devices"]["requests"])}
        checked = 0
        for d in docs:
            ns = d.get("metadata", {}).get("namespace", "default")
            if d.get("kind") == "Pod":
                pod = dict(d, metadata=dict(d["metadata"], namespace=ns))
            elif d.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
                pod = {"apiVersion": "v1", "kind": "Pod", "spec": d["spec"]["template"]["spec"],
                       "metadata": {"name": d["metadata"]["name"] + "-0", "namespace": ns}}
            else:
                continue
            if not pod["spec"].get("resourceClaims"):
                continue
            ps = [dict(p, metadata=dict(p["metadata"], namespace=ns)) for p in params]
            out = self.admit(pod, ps, ns=ns)
            got = claims_by_container(out)
            if not any(k in knd_params for k in self.claim_keys(pod)):
                self.assertEqual(out, pod, f"example {d['metadata']['name']} has no knd-only "
                                 "claim: the policies must leave it alone")
            for c in pod["spec"]["resourceClaims"]:
                key = (("ResourceClaimTemplate", c["resourceClaimTemplateName"])
                       if "resourceClaimTemplateName" in c
                       else ("ResourceClaim", c["resourceClaimName"]))
                if key in knd_params:
                    checked += 1
                    for ctr, entries in got.items():
                        self.assertIn(c["name"], [e["name"] for e in entries],
                                      f"example pod {d['metadata']['name']}, container {ctr}")
        self.assertGreater(checked, 0, "no example pod with a knd claim")

    @staticmethod
    def claim_keys(pod):
        return [("ResourceClaimTemplate", c["resourceClaimTemplateName"])
                if "resourceClaimTemplateName" in c else ("ResourceClaim", c["resourceClaimName"])
                for c in pod["spec"]["resourceClaims"]]

    def test_docs_example_is_what_the_api_server_stores(self):
        text = read("docs/deploy.md")
        section = text[text.index("## Every container references the network claims"):]
        stored = yaml.safe_load(yaml_blocks(section)[0][1])
        claim = next(d for w, d in example_documents()
                     if d.get("kind") == "ResourceClaim" and d["metadata"]["name"] == "data-nic"
                     and w.startswith("docs/deploy.md"))
        sent = copy.deepcopy(stored)
        for c in sent["spec"]["initContainers"] + sent["spec"]["containers"]:
            del c["resources"]
        del sent["metadata"]["annotations"]
        self.assertEqual(self.admit(sent, [claim], ns=stored["metadata"]["namespace"]), stored)

    def test_evaluator_refuses_what_the_api_server_would(self):
        spec, binding = self.policy("knd-pod-claim-templates")
        pod = self.pod({"net": ("template", "nic")})
        doc = {"mutatingPolicy": copy.deepcopy(spec), "binding": binding,
               "params": [claim_template("nic", ["knd-nic"])],
               "request": {"operation": "CREATE", "namespace": "apps",
                           "resource": {"group": "", "version": "v1", "resource": "pods"}},
               "object": pod}
        # An apply configuration that is not an Object does not compile.
        doc["mutatingPolicy"]["mutations"][0]["applyConfiguration"]["expression"] = "{'a': 1}"
        r = subprocess.run([celeval_or_skip(self)], input=json.dumps(doc),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("must be an Object", r.stderr)
        # Changing an atomic list is an error, and failurePolicy Fail denies the pod.
        doc["mutatingPolicy"]["mutations"][0]["applyConfiguration"]["expression"] = (
            "Object{spec: Object.spec{containers: [Object.spec.containers{name: 'app', "
            "args: ['x']}]}}")
        r = celeval(self, doc)
        self.assertFalse(r["allowed"])
        self.assertIn("spec.containers.args: atomic list", r["message"])
        # A variable that fails to evaluate denies the pod too.
        doc["mutatingPolicy"]["variables"][0]["expression"] = "object.spec.nothing.map(c, c)"
        doc["mutatingPolicy"]["mutations"] = spec["mutations"]
        r = celeval(self, doc)
        self.assertFalse(r["allowed"])
        self.assertIn("resulted in error", r["message"])


class DeviceClassTest(unittest.TestCase):
    def test_classes_use_published_attributes(self):
        objs = objects_or_skip(self, "base")
        attrs = published_attributes()
        classes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "DeviceClass"}
        self.assertIn("knd-nic", classes)
        self.assertIn("knd-rdma", classes)
        for name, dc in classes.items():
            exprs = [s["cel"]["expression"] for s in dc["spec"]["selectors"]]
            self.assertTrue(any(f'device.driver == "{DRIVER}"' in e for e in exprs),
                            f"{name} does not select driver {DRIVER}")
            for e in exprs:
                for a in cel_attribute_refs(e):
                    self.assertIn(a, attrs, f"DeviceClass {name} uses {a}, which "
                                  "src/inventory/slices.cc does not publish")
        self.assertIn(f"{DRIVER}/rdma", cel_attribute_refs(
            classes["knd-rdma"]["spec"]["selectors"][0]["cel"]["expression"]))

    def test_selectors_select_published_devices(self):
        """The selectors, evaluated with cel-go on a device as the inventory publishes it
        (every attribute of src/inventory/slices.cc, with its type)."""
        objs = objects_or_skip(self, "base")
        celeval_or_skip(self)
        classes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "DeviceClass"}

        def selects(name, device):
            return all(celeval(self, {"expression": sel["cel"]["expression"],
                                      "vars": {"device": device}})["value"] is True
                       for sel in classes[name]["spec"]["selectors"])

        want = {  # (driver, rdma) -> classes that select it
            (DRIVER, False): {"knd-nic"}, (DRIVER, True): {"knd-nic", "knd-rdma"},
            ("gpu.example.com", True): set()}
        for (driver, rdma), names in want.items():
            device = published_device(driver, rdma=rdma)
            self.assertEqual({n for n in classes if selects(n, device)}, names,
                             f"device of driver {driver}, rdma={rdma}")

    def test_scanner_sees_attributes(self):
        self.assertEqual(cel_attribute_refs(
            'device.attributes["a.b"].x == 1 && device.attributes["c.d"]["y"]'),
            {"a.b/x", "c.d/y"})
        self.assertIn("resource.kubernetes.io/pcieRoot", published_attributes())


class ExamplesTest(unittest.TestCase):
    def setUp(self):
        self.docs = example_documents()

    def test_examples_parse_and_are_objects(self):
        self.assertGreaterEqual(len(self.docs), 4)
        for where, d in self.docs:
            self.assertIsInstance(d, dict, where)
            if d.get("kind") == "NetworkConfig" or "apiVersion" not in d:
                continue  # a bare NetworkConfig or a config fragment
            self.assertIn("kind", d, where)
            self.assertTrue((d.get("metadata") or {}).get("name"), f"{where}: no metadata.name")

    def test_network_configs_are_valid(self):
        params = []
        for where, d in self.docs:
            if d.get("kind") == "NetworkConfig":
                params.append((where, d))
            params += [(where, p) for p in knd_opaque_configs(d)]
        self.assertGreaterEqual(len(params), 2, "examples lost their NetworkConfigs")
        kndctl = kndctl_validate_config()
        if kndctl is None:
            sys.stderr.write("NOTE: kndctl validate-config not available: NetworkConfig "
                             "examples checked against the docs field table only\n")
        for where, p in params:
            self.assertEqual(netconf_field_errors(p), [], where)
            if kndctl:
                with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                    yaml.safe_dump(p, f)
                    f.flush()
                    out = subprocess.run([kndctl, "validate-config", f.name],
                                         capture_output=True, text=True, timeout=30)
                self.assertEqual(out.returncode, 0, f"{where}: {out.stdout}{out.stderr}")

    def test_field_check_catches_mistakes(self):
        self.assertEqual(netconf_field_errors({"apiVersion": NETCONF_API, "kind": "NetworkConfig",
                                               "interface": {"name": "a"},
                                               "ipam": {"type": "x", "anything": 1}}), [])
        errs = netconf_field_errors({"apiVersion": NETCONF_API, "kind": "NetworkConfig",
                                     "interface": {"mtuu": 1}, "routes": [{"dest": "x"}]})
        self.assertEqual(len(errs), 2, errs)

    def test_claims_use_existing_classes_and_published_attributes(self):
        objs = objects_or_skip(self, "base")
        classes = {o["metadata"]["name"] for o in objs if o["kind"] == "DeviceClass"}
        attrs = published_attributes()
        foreign = {"gpu.nvidia.com"}  # classes of other drivers the examples name on purpose
        seen_constraint = False
        for where, d in self.docs:
            if d.get("kind") not in ("ResourceClaim", "ResourceClaimTemplate"):
                continue
            spec = d["spec"]["spec"] if d["kind"] == "ResourceClaimTemplate" else d["spec"]
            reqs = {r["name"]: r for r in spec["devices"]["requests"]}
            for r in reqs.values():
                cls = r["exactly"]["deviceClassName"]
                self.assertIn(cls, classes | foreign, f"{where}: unknown DeviceClass {cls}")
            for c in spec["devices"].get("constraints", []):
                seen_constraint = True
                self.assertLessEqual(set(c["requests"]), set(reqs), where)
                self.assertIn(c["matchAttribute"], attrs, f"{where}: knd does not publish "
                              f"{c['matchAttribute']}")
            for c in spec["devices"].get("config", []):
                self.assertLessEqual(set(c.get("requests", [])), set(reqs), where)
        self.assertTrue(seen_constraint, "the GPU-aligned example lost its constraint")
        for where, d in self.docs:
            if d.get("kind") == "DeviceClass":
                for sel in d["spec"].get("selectors", []):
                    for a in cel_attribute_refs(sel["cel"]["expression"]):
                        self.assertIn(a, attrs, f"{where}: knd does not publish {a}")

    def test_pods_reference_their_claims(self):
        names = {(d.get("kind"), d.get("metadata", {}).get("name")) for _, d in self.docs}
        for where, d in self.docs:
            pod = d.get("spec", {}).get("template", {}).get("spec") if d.get("kind") in (
                "Deployment", "DaemonSet", "StatefulSet", "Job") else (
                d.get("spec") if d.get("kind") == "Pod" else None)
            if pod is None:
                continue
            claims = {c["name"]: c for c in pod.get("resourceClaims", [])}
            for c in claims.values():
                if "resourceClaimName" in c:
                    self.assertIn(("ResourceClaim", c["resourceClaimName"]), names, where)
                else:
                    self.assertIn(("ResourceClaimTemplate", c["resourceClaimTemplateName"]),
                                  names, where)
            for ctr in pod["containers"]:
                for rc in ctr.get("resources", {}).get("claims", []):
                    self.assertIn(rc["name"], claims, where)


class OpenShiftTest(unittest.TestCase):
    def setUp(self):
        self.objs = objects_or_skip(self, "overlays/openshift")
        self.ds = one(self.objs, "DaemonSet", "knd-driver")
        self.pod = self.ds["spec"]["template"]["spec"]

    def test_scc_admits_the_daemonset_and_no_more(self):
        scc = one(self.objs, "SecurityContextConstraints")
        c = self.pod["containers"][0]
        sc = c["securityContext"]
        self.assertFalse(scc["allowPrivilegedContainer"])
        self.assertFalse(scc.get("allowHostPID", False))
        self.assertFalse(scc.get("allowHostIPC", False))
        self.assertTrue(scc["allowHostNetwork"])
        self.assertTrue(scc["allowHostDirVolumePlugin"])
        if c.get("ports"):
            self.assertTrue(scc["allowHostPorts"], "hostNetwork ports are host ports")
        self.assertEqual(set(scc["allowedCapabilities"]), set(sc["capabilities"]["add"]))
        vol_types = {next(k for k in v if k != "name") for v in self.pod["volumes"]}
        vol_types.add("projected")  # the service-account token volume
        self.assertLessEqual(vol_types, set(scc["volumes"]))
        ns = self.ds["metadata"]["namespace"]
        self.assertIn(f"system:serviceaccount:{ns}:{self.pod['serviceAccountName']}",
                      scc["users"])
        self.assertEqual(sc.get("seLinuxOptions", {}).get("type"), "spc_t")
        self.assertEqual(scc["seLinuxContext"]["type"], "RunAsAny")

    def test_machineconfig_enables_nri_in_crio(self):
        mc = one(self.objs, "MachineConfig")
        self.assertIn("machineconfiguration.openshift.io/role", mc["metadata"]["labels"])
        ign = mc["spec"]["config"]
        self.assertTrue(ign["ignition"]["version"].startswith("3."))
        files = ign["storage"]["files"]
        self.assertEqual(len(files), 1)
        f = files[0]
        self.assertTrue(f["path"].startswith("/etc/crio/crio.conf.d/"))
        self.assertEqual(f["mode"], 0o644)
        src = f["contents"]["source"]
        self.assertTrue(src.startswith("data:"), src)
        meta, _, data = src[5:].partition(",")
        text = (base64.b64decode(data) if meta.endswith(";base64")
                else urllib.parse.unquote(data).encode()).decode()
        conf = tomllib.loads(text)
        self.assertIs(conf["crio"]["nri"]["enable_nri"], True)

    def test_cni_dir_is_openshift_multus_dir(self):
        vols = {v["name"]: v for v in self.pod["volumes"]}
        self.assertEqual(vols["cni-bin"]["hostPath"]["path"], "/var/lib/cni/bin")


class ContainerfileTest(unittest.TestCase):
    def setUp(self):
        self.text = read("Containerfile")
        # Join continuation lines for instruction parsing.
        self.joined = re.sub(r"\\\n", " ", self.text)

    def runtime_packages(self):
        stages = re.split(r"^FROM\s+", self.joined, flags=re.M)[1:]
        self.assertEqual(len(stages), 2, "want a build stage and a runtime stage")
        self.assertTrue(stages[1].startswith("debian:12-slim"), stages[1][:40])
        pkgs = []
        for m in re.finditer(r"apt-get install ([^&\n]*)", stages[1]):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
        self.assertTrue(pkgs)
        return pkgs

    def test_build_stage(self):
        self.assertRegex(self.joined, re.compile(r"^FROM debian:12 AS build$", re.M))
        self.assertIn("scripts/install-deps.sh", self.joined)
        m = re.search(r"cmake --build \S+ --target ([^&\n]+)", self.joined)
        self.assertIsNotNone(m)
        self.assertLessEqual({"knd-driver", "kndctl"}, set(m.group(1).split()))
        # Every directory the top-level CMakeLists.txt adds must be copied into the build,
        # except those behind an option (if(KND_X) ... endif()) the image's configure leaves off.
        copied = re.findall(r"^COPY (?!--from)(\S+)", self.text, re.M)
        cmake = read("CMakeLists.txt")
        for opt, body in re.findall(r"^if\((KND_\w+)\)\n(.*?)^endif\(\)", cmake, re.M | re.S):
            if f"-D{opt}=ON" not in self.joined:
                cmake = cmake.replace(body, "")
        for sub in re.findall(r"add_subdirectory\((\S+)\)", cmake):
            self.assertTrue(any(sub == c.rstrip("/") or sub.startswith(c) or c == "."
                                for c in copied), f"{sub} is not copied into the build stage")

    def test_entrypoint_programs_are_installed(self):
        m = re.search(r"^ENTRYPOINT\s+(\[.*\])", self.text, re.M)
        self.assertIsNotNone(m)
        entry = yaml.safe_load(m.group(1))
        self.assertIn("install -D -m 0755 /build/cmd/knd-driver/knd-driver /out" + entry[-1],
                      self.joined)
        if len(entry) > 1:
            self.assertIn(os.path.basename(entry[0]), self.runtime_packages(),
                          f"{entry[0]} is not installed in the runtime stage")

    def test_runtime_packages_exist_in_debian(self):
        pkgs = self.runtime_packages()
        for want in ("containernetworking-plugins", "iproute2"):
            self.assertIn(want, pkgs)
        probe = subprocess.run(["apt-cache", "show", "--no-all-versions", "libc6"],
                               capture_output=True, text=True) if shutil.which("apt-cache") \
            else None
        if probe is None or probe.returncode != 0 or not probe.stdout.strip():
            note_skip(self, "no apt-cache or empty apt lists (run apt-get update)")
        # One call for all (apt-cache is slow to start); it prints a stanza per package found.
        out = subprocess.run(["apt-cache", "show", "--no-all-versions"] + pkgs,
                             capture_output=True, text=True, timeout=120)
        found = set(re.findall(r"^Package: (\S+)$", out.stdout, re.M))
        self.assertEqual(sorted(set(pkgs) - found), [],
                         "runtime packages not in the Debian package lists")

    def test_runtime_packages_provide_every_linked_library(self):
        pkgs = self.runtime_packages()
        bins = [b for b in (find_binary("cmd/knd-driver/knd-driver"),
                            find_binary("cmd/kndctl/kndctl")) if b]
        if not bins or not shutil.which("dpkg") or not shutil.which("ldd"):
            note_skip(self, "binaries not built (or no dpkg/ldd): library coverage not checked")
        libs = set()
        for b in bins:
            ldd = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
            libs |= set(re.findall(r"=>\s+(/\S+)", ldd))
        # A sanitizer build (scripts/test.sh's second pass) links the ASan/UBSan runtimes;
        # images are built without them.
        libs = {l for l in libs if not re.search(r"/lib(a|ub|t|l)san\.so", l)}
        # One dpkg -S for all (it is slow per call). Ask by the real path and by the path ldd
        # printed: with merged /usr, dpkg knows a file under only one of the two.
        query = sorted(libs | {os.path.realpath(l) for l in libs})
        owners = {}
        for line in subprocess.run(["dpkg", "-S"] + query, capture_output=True,
                                   text=True).stdout.splitlines():
            pkg, _, path = line.partition(": ")
            owners[path.strip()] = pkg.split(":")[0]
        needed = {}
        for lib in libs:
            pkg = owners.get(lib) or owners.get(os.path.realpath(lib))
            self.assertIsNotNone(pkg, f"{lib} belongs to no package")
            needed[pkg] = lib
        closure = subprocess.run(
            ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
             "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"] + pkgs,
            capture_output=True, text=True, timeout=120).stdout
        have = {l.strip() for l in closure.splitlines() if l and not l.startswith(" ")}
        have |= set(re.findall(r"Depends: ([\w.+-]+)", closure))
        missing = {p: lib for p, lib in needed.items() if p not in have}
        self.assertEqual(missing, {}, "libraries the binaries load that the runtime stage "
                         "does not install")


class DocsTest(unittest.TestCase):
    def test_deploy_doc_covers_the_essentials(self):
        text = read("docs/deploy.md")
        for needle in ("kubectl apply -k deploy/base", "1.34", "NRI", "containerd",
                       "CRI-O", "OpenShift", "maxSurge", "Upgrade", "Multus"):
            self.assertIn(needle, text)
        self.assertTrue(yaml_blocks(text), "docs/deploy.md has no YAML examples")


if __name__ == "__main__":
    unittest.main(verbosity=2)
