"""Real-runtime harness: the e2e `Node` with a real containerd + runc in place of the runtime
stand-in, driven through CRI by `knd-cri` the way the kubelet drives it.

containerd (2.1 or 1.7, from Debian's newer suites, unpacked by scripts/fixtures.sh) runs in the
node's netns with everything of its own under the node's temp dir: root, state, sockets, NRI
socket (where knd-driver connects), CDI spec dir (knd's), CNI config (the pod's primary network:
bridge + host-local). Pod netns are containerd's own, /run/netns/cni-<uuid>. The sandbox image
is a static pause built by the tests and the container image a busybox-static rootfs, both
imported from local OCI archives: no registry. Every container runs in a cgroup under the
node's own parent, so teardown finds and kills whatever a failed test left behind.

  KND_CONTAINERD=2.1|1.7     which containerd (default 2.1)
  KND_FIXTURE_DIR=DIR        the fixture cache (default <repo>/build/fixtures)
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
import harness  # noqa: E402
from harness import REPO, Proc, binary, rand_suffix, wait_for  # noqa: E402

VERSION = os.environ.get("KND_CONTAINERD", "2.1")
FIXTURES = os.environ.get("KND_FIXTURE_DIR", os.path.join(REPO, "build", "fixtures"))
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
IMAGE = "docker.io/library/busybox:knd"
CGROUP_ROOT = "/sys/fs/cgroup"


class CriError(Exception):
    """A CRI call the runtime refused; str() is the runtime's own message."""


def containerd_bin(version=VERSION):
    d = os.path.join(FIXTURES, f"containerd-{version}", "usr", "bin")
    if not os.path.exists(os.path.join(d, "containerd")):
        raise FileNotFoundError(f"containerd {version} is not in {FIXTURES}: run scripts/fixtures.sh")
    return d


def _config_v3(d, nri_socket, cdi_dir, cni_conf, runc):
    """containerd 2.x (config version 3)."""
    return f"""version = 3
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{PAUSE_IMAGE}'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  enable_cdi = true
  cdi_spec_dirs = ['{cdi_dir}']
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '{runc}'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '{cni_conf}'
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = '{nri_socket}'
  plugin_path = '{d}/nri-plugins'
  plugin_config_path = '{d}/nri-conf'
  plugin_registration_timeout = '5s'
  plugin_request_timeout = '2s'
"""


def _config_v2(d, nri_socket, cdi_dir, cni_conf, runc):
    """containerd 1.7 (config version 2: CRI is one plugin)."""
    return f"""version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_cdi = true
  cdi_spec_dirs = ["{cdi_dir}"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "{nri_socket}"
  plugin_path = "{d}/nri-plugins"
  plugin_config_path = "{d}/nri-conf"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
"""


def build_images(out_dir):
    """The sandbox (pause) and container (busybox) image archives, built once per cache."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import oci_image  # noqa: PLC0415
    os.makedirs(out_dir, exist_ok=True)
    pause = os.path.join(out_dir, "pause.tar")
    oci_image.write_image(PAUSE_IMAGE, pause, [(binary("knd-pause"), "/pause", 0o755)],
                          entrypoint=["/pause"])
    busybox = os.path.join(out_dir, "busybox.tar")
    bb = shutil.which("busybox") or "/bin/busybox"
    applets = ["sh", "sleep", "cat", "ls", "ip", "true", "false", "echo"]
    oci_image.write_image(IMAGE, busybox, [(bb, "/bin/busybox", 0o755)],
                          dirs=["/proc", "/sys", "/dev", "/etc", "/tmp", "/run"],
                          symlinks=[(f"/bin/{a}", "busybox") for a in applets], cmd=["/bin/sh"])
    return pause, busybox


class ContainerdNode(harness.Node):
    """A node whose runtime is containerd. Pod helpers take the same arguments as the stand-in
    runtime's (run_pod, create_container, stop_pod, remove_pod, sandboxes), so a scenario reads
    the same against both."""

    def __init__(self, version=VERSION, name="node1", pod_cidr="10.244.7.0/24"):
        super().__init__(name=name, with_runtime=False)
        self.version = version
        self.pod_cidr = pod_cidr
        self.sandbox_ids = {}     # pod uid -> sandbox id of its current sandbox
        self.containers = {}      # (pod uid, name) -> container id
        self.pod_netns = {}
        self.cgroup_parent = f"/knd-rt-{rand_suffix()}"
        self.cri_calls = 0

    def _setup(self):
        super()._setup()
        self.rt_dir = os.path.join(self.tmp, "containerd")
        self.cni_conf = os.path.join(self.rt_dir, "net.d")
        os.makedirs(self.cni_conf, exist_ok=True)
        with open(os.path.join(self.cni_conf, "10-pods.conflist"), "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": "pods", "plugins": [
                {"type": "bridge", "bridge": "kndpods0", "isGateway": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.pod_cidr}]],
                          "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": os.path.join(self.rt_dir, "ipam")}},
                {"type": "loopback"}]}, f)
        self.start_containerd()
        pause, busybox = build_images(os.path.join(self.tmp, "images"))
        ctr = os.path.join(containerd_bin(self.version), "ctr")
        for archive in (pause, busybox):
            subprocess.run([ctr, "--address", self.cri_socket, "-n", "k8s.io", "images", "import",
                            archive], check=True, capture_output=True, timeout=60)

    # ---- containerd --------------------------------------------------------------------------
    def start_containerd(self):
        bindir = containerd_bin(self.version)
        cfg = os.path.join(self.rt_dir, "config.toml")
        write = _config_v3 if self.version.startswith("2.") else _config_v2
        with open(cfg, "w") as f:
            f.write(write(self.rt_dir, self.nri_socket, self.cdi_dir, self.cni_conf,
                          shutil.which("runc") or "/usr/sbin/runc"))
        self.cri_socket = os.path.join(self.rt_dir, "containerd.sock")
        env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        p = Proc("containerd", [os.path.join(bindir, "containerd"), "--config", cfg], self.tmp,
                 env=env)
        self.procs["containerd"] = p
        self.containerd = p
        wait_for(lambda: p.alive() and self._version_ok(), timeout=30, what="containerd up")
        return p

    def _version_ok(self):
        if not self.containerd.alive():
            raise RuntimeError(f"containerd exited:\n{self.containerd.tail()}")
        try:
            self.runtime_version = self.cri("version")
            return True
        except CriError:
            return False

    def restart_containerd(self, sig=signal.SIGTERM):
        """Stops containerd (pods and their shims keep running, as on a node) and starts it
        again with the same state."""
        self.containerd.stop(sig=sig, group=False)
        return self.start_containerd()

    def cri(self, *args, timeout=60):
        self.cri_calls += 1
        r = subprocess.run([binary("knd-cri"), "--endpoint", self.cri_socket, *args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise CriError(r.stderr.strip())
        return json.loads(r.stdout) if r.stdout.strip() else None

    def _pod_flags(self, pod_obj, prefix=""):
        md = pod_obj["metadata"]
        f = [f"--{prefix}uid", md["uid"], f"--{prefix}namespace", md["namespace"],
             f"--{prefix}name", md["name"]]
        if pod_obj["spec"].get("hostNetwork"):
            f.append(f"--{prefix}host-network")
        return f

    # ---- pod lifecycle through CRI (the stand-in's signatures) -------------------------------
    def run_pod(self, pod_obj, ok=(200,), networks=None):
        if networks is not None:
            raise NotImplementedError("pod CNI networks come from the runtime's CNI config here")
        uid = pod_obj["metadata"]["uid"]
        try:
            sid = self.cri("run-pod", *self._pod_flags(pod_obj),
                           "--cgroup-parent", f"{self.cgroup_parent}/pod{uid}")["id"]
        except CriError as e:
            if ok is not None and 500 not in ok:
                raise
            return 500, {"error": str(e)}
        self.sandbox_ids[uid] = sid
        st = self.cri("pod-status", sid)
        if st.get("netns"):
            self.pod_netns[uid] = os.path.basename(st["netns"])
        return 200, {"id": sid, "netns": st.get("netns", ""), "ip": st.get("ip", "")}

    def create_container(self, pod_obj, name, cdi_devices=(), ok=(200,),
                         command=("/bin/sleep", "3600")):
        """CreateContainer + StartContainer, as the kubelet does. A refusal at either step is
        (500, {"error": runtime's message})."""
        uid = pod_obj["metadata"]["uid"]
        args = ["create-container", self.sandbox_ids[uid], "--name", name, "--image", IMAGE,
                *self._pod_flags(pod_obj, prefix="pod-"),
                "--pod-cgroup-parent", f"{self.cgroup_parent}/pod{uid}"]
        for d in cdi_devices:
            args += ["--cdi-device", d]
        for c in command:
            args += ["--command", c]
        try:
            cid = self.cri(*args)["id"]
            self.containers[(uid, name)] = cid
            self.cri("start-container", cid)
        except CriError as e:
            if ok is not None and 500 not in ok:
                raise
            return 500, {"error": str(e)}
        return 200, {"id": cid}

    def stop_pod(self, pod_obj, order="containerd"):
        assert order == "containerd", "the real runtime has its own order"
        return self.cri("stop-pod", self.sandbox_ids[pod_obj["metadata"]["uid"]])

    def remove_pod(self, pod_obj):
        uid = pod_obj["metadata"]["uid"]
        sid = self.sandbox_ids.pop(uid)
        self.containers = {k: v for k, v in self.containers.items() if k[0] != uid}
        return self.cri("remove-pod", sid)

    def sandboxes(self):
        """The runtime's sandbox list (ListPodSandbox): [{id, state, uid, namespace, name}]."""
        return self.cri("list-pods")

    def wait_driver_ready(self, timeout=30):
        super().wait_driver_ready(timeout=timeout)
        wait_for(lambda: self.nri_connected(), timeout=timeout, what="knd registered with containerd")

    def nri_connected(self):
        text = self.driver_metrics()
        return harness.metric(text, "knd_nri_connected") == 1.0

    def driver_metrics(self):
        import urllib.request  # noqa: PLC0415
        with urllib.request.urlopen("http://127.0.0.1:9177/metrics", timeout=5) as r:
            return r.read().decode()

    # ---- teardown ----------------------------------------------------------------------------
    def close(self):
        if getattr(self, "containerd", None) is not None and self.containerd.alive():
            with contextlib.suppress(Exception):
                for sb in self.cri("list-pods", timeout=30):
                    with contextlib.suppress(Exception):
                        self.cri("stop-pod", sb["id"], timeout=30)
                        self.cri("remove-pod", sb["id"], timeout=30)
        for name in list(self.procs)[::-1]:
            with contextlib.suppress(Exception):
                self.procs[name].stop()
        self._kill_leftovers()
        super().close()

    def _kill_leftovers(self):
        """Whatever containerd left running or mounted for this node: shims (found by our
        socket on their command line), processes in our cgroups, mounts under our temp dir,
        our cgroups."""
        sock = getattr(self, "cri_socket", None)
        if sock:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if sock.encode() in f.read():
                            os.kill(int(pid), signal.SIGKILL)
        for hier in os.listdir(CGROUP_ROOT):
            top = os.path.join(CGROUP_ROOT, hier, self.cgroup_parent.lstrip("/"))
            if not os.path.isdir(top):
                continue
            for root, _, _ in os.walk(top):
                with contextlib.suppress(OSError):
                    with open(os.path.join(root, "cgroup.procs")) as f:
                        for pid in f.read().split():
                            with contextlib.suppress(OSError):
                                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.2)
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for mp in sorted((p for p in points if p.startswith(self.tmp)), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
        for ns in self.pod_netns.values():
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        self.pod_netns = {}
        for hier in os.listdir(CGROUP_ROOT):
            top = os.path.join(CGROUP_ROOT, hier, self.cgroup_parent.lstrip("/"))
            if os.path.isdir(top):
                for root, dirs, _ in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
                    with contextlib.suppress(OSError):
                        os.rmdir(root)
