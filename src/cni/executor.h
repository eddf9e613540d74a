// Runs CNI plugin binaries the way a CNI 1.0/1.1 runtime does (wire-facts.md §6.4):
//  - environment CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH;
//  - one stdin config per plugin of a conflist (name, cniVersion, runtimeConfig from the
//    declared capabilities, prevResult chaining);
//  - ADD in order, DEL in reverse order with the cached final ADD result as prevResult,
//    CHECK in order; the result (or error JSON) is read from stdout, stderr is the fallback;
//  - a per-call timeout that kills the plugin (and anything it started);
//  - plugin binaries only from the configured bin dirs: `type` is a file name, never a path.
// Every ADD result is cached on disk per attachment (network name, container id, ifname), so a
// DEL after a restart still hands the plugins what they added. DEL without a cache still runs
// (no prevResult); a DEL whose netns is gone runs with CNI_NETNS empty, which the spec allows
// and the reference plugins treat as "release what is not in the netns".
//
// Thread-safe; the caller serializes operations on one attachment (the spec forbids parallel
// operations for one container).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cni/conflist.h"

namespace knd::cni {

// The runtime's side of one attachment.
struct RuntimeConf {
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS (ADD/CHECK: required; DEL: may be gone)
  std::string ifname;        // CNI_IFNAME
  std::vector<std::pair<std::string, std::string>> args;      // CNI_ARGS, in order
  nlohmann::json capability_args = nlohmann::json::object();  // e.g. {"deviceID": "..."}
  // When the whole operation must be over (e.g. the NRI hook's budget); each plugin run gets
  // the sooner of this and the per-call timeout, and none is started after it. {} = none.
  std::chrono::steady_clock::time_point deadline = {};
};

struct ExecutorOptions {
  std::vector<std::string> bin_dirs = {"/opt/cni/bin", "/usr/lib/cni"};
  std::string cache_dir;  // results/<network>-<container id>-<ifname>.json below it
  std::chrono::milliseconds timeout{10000};  // per plugin call
};

// The raw outcome of one plugin run.
struct ExecResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

class Executor {
 public:
  explicit Executor(ExecutorOptions opts);
  virtual ~Executor() = default;

  // ADD: runs the plugins of `conflist` (normalized or not) in order, chaining prevResult;
  // caches and returns the final result. On error nothing is undone here: the caller runs Del
  // (the spec wants a DEL after a failed ADD).
  virtual absl::StatusOr<nlohmann::json> Add(const nlohmann::json& conflist, const RuntimeConf& rt);
  // DEL: every plugin in reverse order, each with the cached result as prevResult. All
  // plugins run even if one fails (a failing plugin must not leak the others' resources, e.g.
  // IPAM leases); the first error is returned and the cache is kept for a retry.
  virtual absl::Status Del(const nlohmann::json& conflist, const RuntimeConf& rt);
  // CHECK: in order, with the cached result as prevResult. NotFound without a cached result.
  virtual absl::Status Check(const nlohmann::json& conflist, const RuntimeConf& rt);

  // IPAM by itself, for a native attachment (stdin {cniVersion, name, ipam}). A cached result
  // for the same (network, container id, ifname) is returned without running the plugin, so
  // a repeated Prepare allocates nothing new. `netns` may be empty (no pod yet): the process's
  // own netns is passed, which the IPAM plugins that only book addresses ignore.
  virtual absl::StatusOr<nlohmann::json> IpamAdd(const nlohmann::json& ipam,
                                                 const std::string& network_name,
                                                 const RuntimeConf& rt);
  virtual absl::Status IpamDel(const nlohmann::json& ipam, const std::string& network_name,
                               const RuntimeConf& rt);

  // VERSION: the CNI versions plugin `type` supports.
  absl::StatusOr<std::vector<std::string>> Versions(const std::string& type);

  // The cached ADD result of an attachment (NotFound when none; FailedPrecondition for an
  // entry of another kind than libcni's "cniCacheV1", DataLoss for a corrupt one).
  absl::StatusOr<nlohmann::json> CachedResult(const std::string& network_name,
                                              const RuntimeConf& rt) const;

  // Full path of plugin `type` in the first bin dir holding an executable of that name.
  absl::StatusOr<std::string> FindPlugin(const std::string& type) const;

  // Runs one plugin binary: `env` is the whole CNI environment (plus PATH), `stdin_data` its
  // input. Kills the process group and returns DeadlineExceeded after the per-call timeout or
  // at `deadline` (when set), whichever comes first; does not start it when `deadline` passed.
  absl::StatusOr<ExecResult> Run(const std::string& path,
                                 const std::vector<std::pair<std::string, std::string>>& env,
                                 const std::string& stdin_data,
                                 std::chrono::steady_clock::time_point deadline = {}) const;

  const ExecutorOptions& options() const { return opts_; }

 private:
  absl::StatusOr<nlohmann::json> Invoke(const std::string& command, const nlohmann::json& plugin,
                                        const RuntimeConf& rt, const std::string& netns,
                                        const nlohmann::json& stdin_json, bool want_result);
  absl::StatusOr<std::string> Version(const nlohmann::json& conflist);
  std::string CachePath(const std::string& network_name, const RuntimeConf& rt) const;
  absl::Status WriteCache(const std::string& network_name, const RuntimeConf& rt,
                          const nlohmann::json& conflist, const nlohmann::json& result) const;

  ExecutorOptions opts_;
};

// Stable CNI container id of a CNI attachment: pod uid + claim uid + request.
std::string AttachmentContainerId(const std::string& pod_uid, const std::string& claim_uid,
                                  const std::string& request);
// Stable CNI container id of the IPAM allocation of a native attachment: claim uid + device.
std::string IpamContainerId(const std::string& claim_uid, const std::string& device);
// Network name knd gives standalone IPAM runs. One name for every claim, because host-local
// keeps its allocations per network name: two names over one range would hand out an address
// twice.
inline constexpr char kIpamNetworkName[] = "knd";

}  // namespace knd::cni
