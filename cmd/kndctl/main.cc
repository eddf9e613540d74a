// kndctl: the operator CLI of knd. One CLI11 subcommand per task, each set up by its own
// Add*Command() function below; subcommands work without a cluster unless they say otherwise.
//
//   kndctl inventory [--node-name N] [--config FILE] [--driver-name D] [--netns PATH]
//                    [-o json|yaml]
//     Prints the ResourceSlices this node would publish (JSON: a v1 List; YAML: one
//     document per slice).
//
//   kndctl status [--state-dir DIR] [-o text|json]          (status.h)
//     Every device plan on this node, checked against the live system.
//
//   kndctl doctor [--kubelet-dir D] [--nri-socket S] [--cdi-dir D] [--cni-bin-dir D ...]
//                 [--state-dir D] [--netns-guard P] [-o text|json]   (doctor.h)
//     Checks the node for what knd needs; exits 1 when a check fails.
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/text.h"
#include "config/node_config.h"
#include "doctor.h"
#include "inventory/discovery.h"
#include "inventory/slices.h"
#include "status.h"

namespace {

using nlohmann::json;

// Emits JSON as YAML. Strings are always quoted so that values like "0x15b3", "true" or
// "1500" stay strings when the output is read back.
void EmitYaml(YAML::Emitter& out, const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [k, v] : j.items()) {
        out << YAML::Key << k << YAML::Value;
        EmitYaml(out, v);
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& v : j) EmitYaml(out, v);
      out << YAML::EndSeq;
      break;
    case json::value_t::string:
      out << YAML::DoubleQuoted << j.get<std::string>();
      break;
    case json::value_t::boolean:
      out << YAML::TrueFalseBool << j.get<bool>();
      break;
    case json::value_t::number_integer:
      out << j.get<int64_t>();
      break;
    case json::value_t::number_unsigned:
      out << j.get<uint64_t>();
      break;
    case json::value_t::number_float:
      out << j.get<double>();
      break;
    default:
      out << YAML::Null;
  }
}

std::string DefaultNodeName() {
  if (const char* n = std::getenv("NODE_NAME"); n != nullptr && *n != '\0') return n;
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "localhost";
  return host;
}

struct InventoryFlags {
  std::string node_name;
  std::string config_path;
  std::string driver_name;
  std::string netns;
  std::string sysfs_root = "/sys";
  std::string output = "json";
};

int RunInventory(const InventoryFlags& f) {
  knd::inventory::ScanOptions opts;
  if (!f.config_path.empty()) {
    absl::StatusOr<knd::config::NodeConfig> cfg = knd::config::LoadNodeConfig(f.config_path);
    if (!cfg.ok()) {
      std::cerr << "kndctl inventory: " << cfg.status().ToString() << "\n";
      return 2;
    }
    opts.config = std::move(*cfg);
  }
  std::string driver = !f.driver_name.empty()             ? f.driver_name
                       : !opts.config.driver_name.empty() ? opts.config.driver_name
                                                          : knd::inventory::kDefaultDriverName;
  opts.netns_path = f.netns;
  opts.sysfs_root = f.sysfs_root;
  absl::StatusOr<std::vector<knd::inventory::Device>> devices =
      knd::inventory::Scanner(std::move(opts)).Scan();
  if (!devices.ok()) {
    std::cerr << "kndctl inventory: " << devices.status().ToString() << "\n";
    return 1;
  }
  std::string node = f.node_name.empty() ? DefaultNodeName() : f.node_name;
  std::vector<json> slices = knd::inventory::BuildSlices(node, driver, std::move(*devices), 1);
  if (f.output == "yaml") {
    for (const auto& s : slices) {
      YAML::Emitter out;
      EmitYaml(out, s);
      std::cout << "---\n" << out.c_str() << "\n";
    }
  } else {
    json list = {{"apiVersion", "v1"}, {"kind", "List"}, {"items", slices}};
    std::cout << knd::DumpJson(list, 2) << "\n";
  }
  return 0;
}

void AddInventoryCommand(CLI::App& app, int& rc) {
  auto flags = std::make_shared<InventoryFlags>();
  CLI::App* cmd = app.add_subcommand(
      "inventory", "Print the ResourceSlices this node would publish (no cluster needed)");
  cmd->add_option("--node-name", flags->node_name,
                  "Node name (pool name); default: $NODE_NAME, else the hostname");
  cmd->add_option("--config", flags->config_path, "Node config YAML (include/exclude/...)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--driver-name", flags->driver_name,
                  "DRA driver name and attribute domain (default: config, else " +
                      std::string(knd::inventory::kDefaultDriverName) + ")");
  cmd->add_option("--netns", flags->netns, "Scan this network namespace (file path)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--sysfs-root", flags->sysfs_root, "sysfs to read (own netns only)")
      ->capture_default_str();
  cmd->add_option("-o,--output", flags->output, "Output format")
      ->check(CLI::IsMember({"json", "yaml"}))
      ->capture_default_str();
  cmd->callback([flags, &rc] { rc = RunInventory(*flags); });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kndctl: operator CLI of the knd network driver"};
  app.require_subcommand(1);
  int rc = 0;
  AddInventoryCommand(app, rc);
  knd::kndctl::AddStatusCommand(app, rc);
  knd::kndctl::AddDoctorCommand(app, rc);
  CLI11_PARSE(app, argc, argv);
  return rc;
}
