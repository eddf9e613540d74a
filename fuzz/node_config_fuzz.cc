// The node config (YAML from a ConfigMap): parse, then ask it about a device, as discovery
// does for every link.
#include <cstdint>
#include <string>

#include "config/node_config.h"
#include "fuzz_util.h"

namespace cfg = knd::config;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  knd::fuzz::Input in(data, size);
  cfg::SelectorFacts facts;
  facts.if_name = in.Field();
  facts.driver = in.Field();
  facts.pci_address = in.Field();
  facts.pci_vendor = in.Field();
  facts.pci_device = in.Field();
  facts.type = in.Field();
  const uint8_t bits = in.Byte();
  facts.is_virtual = bits & 1;
  facts.rdma = bits & 2;
  facts.is_sriov_vf = bits & 4;
  absl::StatusOr<cfg::NodeConfig> nc = cfg::ParseNodeConfig(std::string(in.Rest()), "fuzz");
  (void)cfg::ParseBitRate(facts.if_name);
  (void)cfg::NormalizeHexId(facts.pci_vendor);
  if (!nc.ok()) return 0;
  (void)cfg::Selected(*nc, facts);
  (void)cfg::Excluded(*nc, facts);
  (void)cfg::SharedRuleFor(*nc, facts);
  (void)cfg::ResourceNameFor(*nc, facts);
  return 0;
}
