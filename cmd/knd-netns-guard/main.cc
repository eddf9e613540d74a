// knd-netns-guard: the OCI createRuntime hook knd puts in the CDI spec of every claim it
// prepares (knd-driver --netns-guard). The runtime runs it in the host's namespaces after it
// has created a container of the pod and before the container starts, with the container's
// OCI state on stdin. It checks that the pod's network namespace holds the interfaces knd
// promised, and fails the container when one is missing.
//
// Why: a runtime drops an NRI plugin that is slow, crashed or re-registering and starts the
// pod without it, silently (lessons-from-peers §1). A container that fails with a message
// naming the claim beats a pod that runs without its network; the kubelet retries it.
//
// It runs on the host, whatever the host has installed: linked statically, libc only at run
// time, and it does nothing but read stdin, setns and look up interface names.
//
//   knd-netns-guard --claim NS/NAME --ifname NAME [--mac MAC] [--ifname NAME [--mac MAC] ...]
//                   < OCI state JSON
//
// `--mac` after an `--ifname` names the device's MAC on the host: the interface also counts
// as present when a link with that MAC is in the pod under another name (the pod's CNI,
// Multus, moved it there before knd's hook, which then recorded it as Multus's).
//
// Exit 0: every interface is there. 1: one is missing (stderr says which; the runtime puts it
// in the container's error). 2: bad arguments or no usable state (fail closed: without the
// pid there is no way to know).
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

int Usage(const char* why) {
  std::fprintf(stderr,
               "knd-netns-guard: %s\nusage: knd-netns-guard --claim NS/NAME --ifname NAME "
               "[--mac MAC] [--ifname NAME [--mac MAC] ...] < OCI state\n",
               why);
  return 2;
}

struct Expected {
  std::string ifname;
  std::string mac;  // lower case; "" = by name only
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// MACs of the links of the current network namespace (getifaddrs asks netlink, which answers
// for the namespace the thread is in).
std::vector<std::string> LinkMacs() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_PACKET) continue;
    const auto* ll = reinterpret_cast<const sockaddr_ll*>(a->ifa_addr);
    if (ll->sll_halen != 6) continue;
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", ll->sll_addr[0],
                  ll->sll_addr[1], ll->sll_addr[2], ll->sll_addr[3], ll->sll_addr[4],
                  ll->sll_addr[5]);
    out.push_back(buf);
  }
  ::freeifaddrs(list);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string claim;
  std::vector<Expected> expected;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--claim" || a == "--ifname" || a == "--mac") && i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--claim") {
        claim = v;
      } else if (a == "--mac") {
        if (expected.empty()) return Usage("--mac must follow an --ifname");
        if (v.size() != 17) return Usage(("bad --mac \"" + v + "\"").c_str());
        expected.back().mac = Lower(v);
      } else if (v.empty() || v.size() >= IFNAMSIZ) {
        return Usage(("bad --ifname \"" + v + "\"").c_str());
      } else {
        expected.push_back({v, ""});
      }
    } else {
      return Usage(("unknown argument \"" + a + "\"").c_str());
    }
  }
  if (claim.empty() || expected.empty()) return Usage("--claim and --ifname are required");

  std::string state{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  nlohmann::json j = nlohmann::json::parse(state, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer() ||
      j["pid"].get<long long>() <= 0) {
    std::fprintf(stderr,
                 "knd-netns-guard: claim %s: the OCI state on stdin has no container pid; "
                 "cannot check the pod's network\n",
                 claim.c_str());
    return 2;
  }
  const std::string ns_path = "/proc/" + std::to_string(j["pid"].get<long long>()) + "/ns/net";
  int fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "knd-netns-guard: claim %s: entering %s: %s\n", claim.c_str(),
                 ns_path.c_str(), std::strerror(errno));
    return 2;
  }
  ::close(fd);
  std::string missing;
  std::vector<std::string> macs;
  bool macs_read = false;
  for (const Expected& e : expected) {
    if (::if_nametoindex(e.ifname.c_str()) != 0) continue;
    if (!e.mac.empty()) {
      if (!macs_read) {
        macs = LinkMacs();
        macs_read = true;
      }
      if (std::find(macs.begin(), macs.end(), e.mac) != macs.end()) continue;
    }
    missing += (missing.empty() ? "" : ", ") + e.ifname;
  }
  if (missing.empty()) return 0;
  std::fprintf(stderr,
               "knd: claim %s: interface %s is not in the pod's network namespace: the runtime "
               "started the pod without knd's NRI hook (knd-driver not connected to the "
               "runtime, or too slow). The container is refused so that the pod does not run "
               "without its network; it is retried.\n",
               claim.c_str(), missing.c_str());
  return 1;
}
