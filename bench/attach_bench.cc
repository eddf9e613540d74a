// Attach of a moved device, three ways, side by side in one run (issue 9, benchmarks 1 and 2):
//
//   knd    knd's native attacher in process (attach::NewNetlinkAttacher()): move + rename +
//          MTU in one RTM_NEWLINK, 2 addresses, up, 2 routes; Detach gives it back.
//   cni    what Multus runs for the same result: Debian's host-device plugin with `static`
//          IPAM, then `tuning` for the MTU, each exec'd with the CNI environment and the config
//          on stdin (prevResult handed from one to the next); DEL in reverse order.
//   floor  knd-bench-floor: one RTM_NEWLINK with IFLA_NET_NS_FD, nothing else; back the same.
//
// and, for a shared NIC (issue 16; --impl knd-child,cni-macvlan), a child of eth1 instead of
// eth1 itself, which stays on the host:
//
//   knd-child    knd's AttachChild: one RTM_NEWLINK makes the macvlan (bridge mode, name, MTU,
//                MAC) in the pod netns, then 2 addresses, up, 2 routes; DetachChild deletes it.
//   cni-macvlan  what Multus runs for a macvlan NAD: Debian's macvlan plugin (master eth1,
//                bridge, MTU) with `static` IPAM, exec'd with the CNI environment; DEL.
//   child-floor  the kernel's part alone: the one RTM_NEWLINK that makes the macvlan in the
//                pod netns, and the RTM_DELLINK that deletes it, from an open socket.
//
// The process runs in a fresh network namespace of its own (the "node"), so the host is never
// touched; one veth end plays the NIC and one named pod netns receives it. Iterations rotate
// the order of the three so a drifting machine hurts none of them more than the others.
// Prints one JSON object on stdout: every sample plus the result checks.
//
// --device IFNAME uses that NIC (e.g. an SR-IOV VF in the hardware lab, test/vm) instead of a
// veth end: it is moved into the bench's namespace as eth1 and back under its name at the end.
//
// --markers writes "@@<impl> attach" / "@@<impl> detach" / "@@end" to stderr around each
// step so a syscall trace (strace -f) can attribute netlink exchanges to the step.
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "attach/attacher.h"
#include "config/network_config.h"
#include "netlink/ops.h"
#include "netlink/query.h"
#include "netlink/socket.h"
#include "netns/netns.h"

extern char** environ;

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kHostIf[] = "eth1";
constexpr char kPeerIf[] = "eth1p";
constexpr char kPodIf[] = "net-a";
constexpr char kHostAddr[] = "10.99.0.2/24";
constexpr uint32_t kHostMtu = 1500;
constexpr uint32_t kPodMtu = 1400;

// The attachment every implementation must produce (same as test/e2e/test_attach.py).
const char* kConfig = R"({
  "apiVersion": "knd.k8s.cni.cncf.io/v1alpha1", "kind": "NetworkConfig",
  "interface": {"name": "net-a", "mtu": 1400,
                "addresses": ["192.0.2.10/24", "2001:db8::10/64"]},
  "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
             {"destination": "203.0.113.0/24"}]})";

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "knd-bench-attach: %s\n", msg.c_str());
  std::exit(1);
}

// CPU time (user + system) of this process so far, finished helper threads included.
int64_t SelfCpuNs() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

int64_t Ns(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

bool g_markers = false;
std::string g_pod_path;  // deleted at exit, also when Die() exits early

void DeletePodNetns() {
  if (!g_pod_path.empty()) (void)knd::netns::DeleteNamed(g_pod_path);
}
void Mark(const std::string& what) {
  if (!g_markers) return;
  std::string line = "@@" + what + "\n";
  // One unbuffered write: the trace shows it in order with the process's other syscalls.
  if (write(2, line.data(), line.size()) < 0) Die("write marker");
}

struct ChildResult {
  int status = -1;
  std::string out;
  std::string err;
  int64_t wall_ns = 0;
  int64_t cpu_ns = 0;  // user + system of the child
};

// posix_spawn + pipes for stdin/stdout/stderr, wait4 for the child's own accounting.
ChildResult Run(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                const std::string& input) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    Die("pipe: " + std::string(std::strerror(errno)));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> av, ev;
  for (const auto& a : argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  for (const auto& e : env) ev.push_back(const_cast<char*>(e.c_str()));
  ev.push_back(nullptr);
  ChildResult r;
  Clock::time_point t0 = Clock::now();
  pid_t pid = 0;
  int rc = posix_spawn(&pid, av[0], &fa, nullptr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (rc != 0) Die("spawn " + argv[0] + ": " + std::strerror(rc));
  // Inputs are a few hundred bytes: they fit in the pipe, so write all, then read.
  if (!input.empty() && write(in[1], input.data(), input.size()) < 0) Die("write stdin");
  close(in[1]);
  char buf[4096];
  for (int fd : {out[0], err[0]}) {
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) (fd == out[0] ? r.out : r.err).append(buf, n);
    close(fd);
  }
  struct rusage ru {};
  if (wait4(pid, &r.status, 0, &ru) != pid) Die("wait4 " + argv[0]);
  r.wall_ns = Ns(Clock::now() - t0);
  r.cpu_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
             (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
  return r;
}

void Ip(const std::string& args) {
  std::vector<std::string> argv = {"/usr/sbin/ip"};
  if (access(argv[0].c_str(), X_OK) != 0) argv[0] = "/sbin/ip";
  for (auto& a : absl::StrSplit(args, ' ', absl::SkipEmpty())) argv.emplace_back(a);
  ChildResult r = Run(argv, {}, "");
  if (r.status != 0) Die("ip " + args + ": " + r.err);
}

template <typename T>
T OrDie(absl::StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(what + ": " + std::string(v.status().message()));
  return std::move(*v);
}
void OrDie(const absl::Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + std::string(s.message()));
}

struct Bench {
  std::string pod_path;
  std::string floor_bin;
  std::string cni_dir;
  knd::attach::AttachRequest req;
  std::unique_ptr<knd::attach::Attacher> attacher;
  std::optional<knd::state::HostSnapshot> snap;
  knd::netlink::NlSock host_sock;
  knd::netlink::NlSock pod_sock;

  // Puts the NIC back into its starting state on the host (outside any timing): CNI DEL
  // leaves it down and without its host address; knd's Detach restores both.
  void ResetHost() {
    knd::netlink::Link l = OrDie(knd::netlink::GetLinkByName(host_sock, kHostIf), "find eth1");
    if (l.mtu != kHostMtu) {
      knd::netlink::LinkChange c;
      c.mtu = kHostMtu;
      OrDie(knd::netlink::ChangeLink(host_sock, l.ifindex, c), "reset MTU of eth1");
    }
    OrDie(knd::netlink::AddAddress(host_sock, l.ifindex, kHostAddr), "reset address of eth1");
    OrDie(knd::netlink::SetLinkUp(host_sock, l.ifindex, true), "set eth1 up");
  }

  // The pod side of the result, checked once per implementation: name, MTU, both addresses,
  // both routes.
  json CheckPod() {
    json c;
    absl::StatusOr<knd::netlink::Link> l = knd::netlink::GetLinkByName(pod_sock, kPodIf);
    c["present"] = l.ok();
    if (!l.ok()) return c;
    c["mtu"] = l->mtu;
    c["up"] = (l->flags & 1) != 0;
    std::vector<std::string> addrs;
    for (const auto& a : OrDie(knd::netlink::ListAddresses(pod_sock, l->ifindex), "addrs")) {
      if (a.scope == RT_SCOPE_UNIVERSE) addrs.push_back(a.cidr);
    }
    std::sort(addrs.begin(), addrs.end());
    c["addresses"] = addrs;
    std::vector<std::string> routes;
    for (const auto& r : OrDie(knd::netlink::ListRoutes(pod_sock, AF_INET, l->ifindex), "routes")) {
      if (r.table != RT_TABLE_MAIN || r.protocol == RTPROT_KERNEL) continue;
      routes.push_back(r.dst + (r.gateway.empty() ? "" : " via " + r.gateway));
    }
    std::sort(routes.begin(), routes.end());
    c["routes"] = routes;
    c["ok"] = l->mtu == kPodMtu && addrs.size() == 2 && routes.size() == 2;
    return c;
  }

  bool HostHasNic() { return knd::netlink::GetLinkByName(host_sock, kHostIf).ok(); }

  json Knd(bool check) {
    json s{{"impl", "knd"}};
    Mark("knd attach");
    int64_t cpu0 = SelfCpuNs();
    Clock::time_point t0 = Clock::now();
    absl::StatusOr<knd::state::AttachResult> r =
        attacher->Attach(req, [this](const knd::state::HostSnapshot& h) {
          snap = h;
          return absl::OkStatus();
        });
    Clock::time_point t1 = Clock::now();
    if (!r.ok()) Die("knd attach: " + std::string(r.status().message()));
    if (check) s["check"] = CheckPod();
    Mark("knd detach");
    Clock::time_point t2 = Clock::now();
    OrDie(attacher->Detach(req.identity, *snap, pod_path, kPodIf, "bench"), "knd detach");
    Clock::time_point t3 = Clock::now();
    int64_t cpu1 = SelfCpuNs();
    Mark("end");
    s["attach_ns"] = Ns(t1 - t0);
    s["detach_ns"] = Ns(t3 - t2);
    s["cpu_ns"] = cpu1 - cpu0;  // attach + detach (+ the result check on iteration -1)
    if (!HostHasNic()) Die("knd detach: eth1 not back on the host");
    ResetHost();
    return s;
  }

  std::vector<std::string> CniEnv(const std::string& cmd) {
    return {"CNI_COMMAND=" + cmd,
            "CNI_CONTAINERID=knd-bench-0123456789abcdef",
            "CNI_NETNS=" + pod_path,
            std::string("CNI_IFNAME=") + kPodIf,
            "CNI_ARGS=IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-a;"
            "K8S_POD_INFRA_CONTAINER_ID=knd-bench-0123456789abcdef",
            "CNI_PATH=" + cni_dir,
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  }

  json HostDeviceConf() {
    return json::parse(R"({"cniVersion": "1.0.0", "name": "bench", "type": "host-device",
      "device": "eth1",
      "ipam": {"type": "static",
               "addresses": [{"address": "192.0.2.10/24"}, {"address": "2001:db8::10/64"}],
               "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.1"},
                          {"dst": "203.0.113.0/24"}]}})");
  }
  json TuningConf(const json& prev) {
    return json{{"cniVersion", "1.0.0"},
                {"name", "bench"},
                {"type", "tuning"},
                {"mtu", kPodMtu},
                {"prevResult", prev}};
  }

  // `time_bin` (GNU time, "-f %M"): run each plugin under it to learn its peak RSS. A child
  // spawned straight from this process would report this process's RSS (the kernel keeps
  // the pre-exec peak), so a small wrapper is the honest way. Not used in timed runs.
  json Cni(bool check, const std::string& time_bin = "") {
    json s{{"impl", "cni"}};
    int64_t cpu = 0, rss = 0;
    auto exec = [&](const std::string& plugin, const std::string& cmd, const json& conf) {
      std::vector<std::string> argv = {cni_dir + "/" + plugin};
      if (!time_bin.empty()) argv.insert(argv.begin(), {time_bin, "-f", "@@rss %M"});
      ChildResult r = Run(argv, CniEnv(cmd), conf.dump());
      if (r.status != 0) Die("CNI " + cmd + " " + plugin + ": " + r.out + r.err);
      cpu += r.cpu_ns;
      if (size_t at = r.err.rfind("@@rss "); at != std::string::npos) {
        rss = std::max<int64_t>(rss, std::stoll(r.err.substr(at + 6)));
      }
      return r;
    };
    Mark("cni attach");
    Clock::time_point t0 = Clock::now();
    ChildResult add = exec("host-device", "ADD", HostDeviceConf());
    json prev = json::parse(add.out, nullptr, false);
    if (prev.is_discarded()) Die("CNI ADD host-device: result is not JSON: " + add.out);
    exec("tuning", "ADD", TuningConf(prev));
    Clock::time_point t1 = Clock::now();
    if (check) s["check"] = CheckPod();
    Mark("cni detach");
    Clock::time_point t2 = Clock::now();
    exec("tuning", "DEL", TuningConf(prev));
    json del = HostDeviceConf();
    del["prevResult"] = prev;
    exec("host-device", "DEL", del);
    Clock::time_point t3 = Clock::now();
    Mark("end");
    s["attach_ns"] = Ns(t1 - t0);
    s["detach_ns"] = Ns(t3 - t2);
    s["cpu_ns"] = cpu;
    if (!time_bin.empty()) s["maxrss_kb"] = rss;
    if (!HostHasNic()) Die("CNI DEL: eth1 not back on the host");
    ResetHost();
    return s;
  }

  json KndChild(bool check) {
    json s{{"impl", "knd-child"}};
    knd::attach::AttachRequest creq = req;
    creq.child = knd::state::ChildPlan{"macvlan", "bridge", 0, "02:00:00:00:00:10"};
    Mark("knd-child attach");
    int64_t cpu0 = SelfCpuNs();
    Clock::time_point t0 = Clock::now();
    absl::StatusOr<knd::state::AttachResult> r =
        attacher->AttachChild(creq, [] { return absl::OkStatus(); });
    Clock::time_point t1 = Clock::now();
    if (!r.ok()) Die("knd child attach: " + std::string(r.status().message()));
    if (check) s["check"] = CheckPod();
    Mark("knd-child detach");
    Clock::time_point t2 = Clock::now();
    OrDie(attacher->DetachChild(pod_path, kPodIf, *creq.child, "bench"), "knd child detach");
    Clock::time_point t3 = Clock::now();
    int64_t cpu1 = SelfCpuNs();
    Mark("end");
    s["attach_ns"] = Ns(t1 - t0);
    s["detach_ns"] = Ns(t3 - t2);
    s["cpu_ns"] = cpu1 - cpu0;
    if (knd::netlink::GetLinkByName(pod_sock, kPodIf).ok()) Die("knd child detach: child left");
    return s;
  }

  json ChildFloor() {
    json s{{"impl", "child-floor"}};
    knd::netns::Netns pod = OrDie(knd::netns::Netns::Open(pod_path), "open pod netns");
    knd::netlink::Link parent = OrDie(knd::netlink::GetLinkByName(host_sock, kHostIf), "eth1");
    knd::netlink::ChildLink c;
    c.kind = "macvlan";
    c.mode = "bridge";
    c.parent_ifindex = parent.ifindex;
    c.netns_fd = pod.fd();
    c.name = kPodIf;
    c.mtu = kPodMtu;
    c.mac = "02:00:00:00:00:10";
    Mark("child-floor attach");
    Clock::time_point t0 = Clock::now();
    OrDie(knd::netlink::CreateChildLink(host_sock, c), "child floor create");
    Clock::time_point t1 = Clock::now();
    knd::netlink::Link l = OrDie(knd::netlink::GetLinkByName(pod_sock, kPodIf), "child floor");
    Mark("child-floor detach");
    Clock::time_point t2 = Clock::now();
    OrDie(knd::netlink::DeleteLink(pod_sock, l.ifindex), "child floor delete");
    Clock::time_point t3 = Clock::now();
    Mark("end");
    s["attach_ns"] = Ns(t1 - t0);
    s["detach_ns"] = Ns(t3 - t2);
    return s;
  }

  json MacvlanConf() {
    return json::parse(R"({"cniVersion": "1.0.0", "name": "bench", "type": "macvlan",
      "master": "eth1", "mode": "bridge", "mtu": 1400,
      "ipam": {"type": "static",
               "addresses": [{"address": "192.0.2.10/24"}, {"address": "2001:db8::10/64"}],
               "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.1"},
                          {"dst": "203.0.113.0/24"}]}})");
  }

  json CniMacvlan(bool check) {
    json s{{"impl", "cni-macvlan"}};
    int64_t cpu = 0;
    Mark("cni-macvlan attach");
    Clock::time_point t0 = Clock::now();
    ChildResult add = Run({cni_dir + "/macvlan"}, CniEnv("ADD"), MacvlanConf().dump());
    Clock::time_point t1 = Clock::now();
    if (add.status != 0) Die("CNI ADD macvlan: " + add.out + add.err);
    cpu += add.cpu_ns;
    json prev = json::parse(add.out, nullptr, false);
    if (prev.is_discarded()) Die("CNI ADD macvlan: result is not JSON: " + add.out);
    if (check) s["check"] = CheckPod();
    Mark("cni-macvlan detach");
    json del = MacvlanConf();
    del["prevResult"] = prev;
    Clock::time_point t2 = Clock::now();
    ChildResult rm = Run({cni_dir + "/macvlan"}, CniEnv("DEL"), del.dump());
    Clock::time_point t3 = Clock::now();
    Mark("end");
    if (rm.status != 0) Die("CNI DEL macvlan: " + rm.out + rm.err);
    cpu += rm.cpu_ns;
    s["attach_ns"] = Ns(t1 - t0);
    s["detach_ns"] = Ns(t3 - t2);
    s["cpu_ns"] = cpu;
    if (knd::netlink::GetLinkByName(pod_sock, kPodIf).ok()) Die("CNI DEL macvlan: child left");
    return s;
  }

  json Floor() {
    json s{{"impl", "floor"}};
    std::string self = "/proc/" + std::to_string(getpid()) + "/ns/net";
    Mark("floor attach");
    ChildResult in = Run({floor_bin, kHostIf, pod_path}, {}, "");
    Mark("floor detach");
    ChildResult out = Run({floor_bin, kHostIf, self, pod_path}, {}, "");
    Mark("end");
    if (in.status != 0 || out.status != 0) Die("floor: " + in.err + out.err);
    s["attach_ns"] = std::stoll(in.out);  // the exchange itself, timed inside the program
    s["detach_ns"] = std::stoll(out.out);
    s["exec_attach_ns"] = in.wall_ns;  // the whole process, for scale
    s["cpu_ns"] = in.cpu_ns + out.cpu_ns;
    if (!HostHasNic()) Die("floor: eth1 not back on the host");
    ResetHost();
    return s;
  }
};

std::string g_device;
int g_caller_ns = -1;

// --device: the NIC goes back to the caller's namespace under its own name.
void ReturnDevice() {
  Ip(std::string("link set ") + kHostIf + " netns /proc/" + std::to_string(getpid()) + "/fd/" +
     std::to_string(g_caller_ns) + " name " + g_device);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 20;
  std::vector<std::string> impls = {"knd", "cni", "floor"};
  std::string floor_bin, cni_dir = "/usr/lib/cni";
  std::string device;  // a real NIC (e.g. an SR-IOV VF) to use instead of a veth end
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + ": missing value");
      return argv[++i];
    };
    if (a == "--iterations") {
      iterations = std::stoi(next());
    } else if (a == "--impl") {
      impls = absl::StrSplit(next(), ',', absl::SkipEmpty());
    } else if (a == "--floor") {
      floor_bin = next();
    } else if (a == "--cni-dir") {
      cni_dir = next();
    } else if (a == "--markers") {
      g_markers = true;
    } else if (a == "--device") {
      device = next();
    } else {
      Die("unknown argument " + a +
          " (--iterations N --impl knd,cni,floor,knd-child,cni-macvlan --floor PATH --cni-dir DIR"
          " --markers"
          " --device IFNAME)");
    }
  }
  if (floor_bin.empty()) {
    // Built next to this binary.
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) Die("readlink /proc/self/exe");
    self[n] = 0;
    std::string dir(self);
    floor_bin = dir.substr(0, dir.rfind('/')) + "/knd-bench-floor";
  }
  // A node namespace of our own, before any thread exists: everything created in it (the
  // veth pair) dies with the process.
  // With --device, the NIC is moved in from the caller's namespace as eth1 and moved back
  // under its own name at the end (a physical NIC would otherwise come back as eth1).
  int caller_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (caller_ns < 0) Die("open own netns: " + std::string(strerror(errno)));
  if (unshare(CLONE_NEWNET) != 0) Die("unshare(CLONE_NEWNET): " + std::string(strerror(errno)));
  Ip("link set lo up");
  if (device.empty()) {
    Ip(std::string("link add ") + kHostIf + " type veth peer name " + kPeerIf);
    Ip(std::string("link set ") + kPeerIf + " up");
  } else {
    // ip names our namespace by a path to this fd (/proc/<pid>/fd/N).
    int bench_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (bench_ns < 0 || setns(caller_ns, CLONE_NEWNET) != 0) Die("enter the caller's netns");
    Ip("link set " + device + " netns /proc/" + std::to_string(getpid()) + "/fd/" +
       std::to_string(bench_ns) + " name " + kHostIf);
    if (setns(bench_ns, CLONE_NEWNET) != 0) Die("enter the bench netns");
    g_device = device;
    g_caller_ns = caller_ns;
    std::atexit(ReturnDevice);
  }

  Bench b;
  b.floor_bin = floor_bin;
  b.cni_dir = cni_dir;
  knd::netns::ScopedNetns pod =
      OrDie(knd::netns::ScopedNetns::Create("knd-bench-pod"), "pod netns");
  b.pod_path = pod.path();
  g_pod_path = pod.path();
  std::atexit(DeletePodNetns);
  b.host_sock = OrDie(knd::netlink::OpenRouteSocket(), "host netlink socket");
  b.pod_sock = OrDie(
      knd::netlink::OpenRouteSocketIn(OrDie(knd::netns::Netns::Open(pod.path()), "open pod netns")),
      "pod netlink socket");
  b.ResetHost();
  knd::netlink::Link nic = OrDie(knd::netlink::GetLinkByName(b.host_sock, kHostIf), "eth1");
  b.req.identity.ifindex = nic.ifindex;
  b.req.identity.mac = nic.mac;
  b.req.identity.ifname = nic.name;
  b.req.netns_path = pod.path();
  b.req.where = "bench pod-a";
  b.req.config = OrDie(knd::config::Decode(json::parse(kConfig), "bench"), "bench config");
  b.attacher = knd::attach::NewNetlinkAttacher();

  json samples = json::array();
  json checks = json::object();
  json extra = json::object();
  // Iteration -1 warms caches up and checks each result; it is not a sample.
  for (int i = -1; i < iterations; ++i) {
    for (size_t k = 0; k < impls.size(); ++k) {
      const std::string& impl = impls[(i + 1 + k) % impls.size()];
      bool check = i == -1;
      if (check && impl == "cni" && access("/usr/bin/time", X_OK) == 0) {
        extra["cni_plugin_peak_rss_kb"] = b.Cni(false, "/usr/bin/time")["maxrss_kb"];
      }
      json s;
      if (impl == "knd") {
        s = b.Knd(check);
      } else if (impl == "cni") {
        s = b.Cni(check);
      } else if (impl == "floor") {
        s = b.Floor();
      } else if (impl == "knd-child") {
        s = b.KndChild(check);
      } else if (impl == "cni-macvlan") {
        s = b.CniMacvlan(check);
      } else if (impl == "child-floor") {
        s = b.ChildFloor();
      } else {
        Die("unknown implementation " + impl);
      }
      if (s.contains("check")) {
        checks[impl] = s["check"];
        s.erase("check");
      }
      s["iteration"] = i;
      if (i >= 0) samples.push_back(std::move(s));
    }
  }
  json out{{"iterations", iterations}, {"samples", samples}, {"checks", checks}};
  out.update(extra);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
