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
//   knd-netns-guard --claim NS/NAME --ifname NAME [--ifname NAME ...]   < OCI state JSON
//
// Exit 0: every interface is there. 1: one is missing (stderr says which; the runtime puts it
// in the container's error). 2: bad arguments or no usable state (fail closed: without the
// pid there is no way to know).
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

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
               "[--ifname NAME ...] < OCI state\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string claim;
  std::vector<std::string> ifnames;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--claim" || a == "--ifname") && i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--claim") {
        claim = v;
      } else if (v.empty() || v.size() >= IFNAMSIZ) {
        return Usage(("bad --ifname \"" + v + "\"").c_str());
      } else {
        ifnames.push_back(v);
      }
    } else {
      return Usage(("unknown argument \"" + a + "\"").c_str());
    }
  }
  if (claim.empty() || ifnames.empty()) return Usage("--claim and --ifname are required");

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
  for (const std::string& n : ifnames) {
    if (::if_nametoindex(n.c_str()) == 0) missing += (missing.empty() ? "" : ", ") + n;
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
