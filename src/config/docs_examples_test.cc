// Every YAML example in docs/network-config.md is a test input (lessons-from-peers §15: docs
// that disagree with strict decoding). Blocks whose first line is the apiVersion must decode;
// blocks whose first line is `# invalid: <text>` must be refused with <text> in the message.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "config/network_config.h"
#include "config/node_config.h"
#include "config/yaml_json.h"

namespace knd::config {
namespace {

struct Block {
  int line = 0;  // line of the opening fence, for messages
  std::string text;
};

std::vector<Block> YamlBlocks(const std::string& md) {
  std::vector<Block> out;
  size_t pos = 0;
  int line = 1;
  bool in = false;
  Block cur;
  while (pos < md.size()) {
    size_t nl = md.find('\n', pos);
    std::string l = md.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    if (!in && l.rfind("```yaml", 0) == 0) {
      in = true;
      cur = Block{line, ""};
    } else if (in && l.rfind("```", 0) == 0) {
      in = false;
      out.push_back(cur);
    } else if (in) {
      cur.text += l + "\n";
    }
    if (nl == std::string::npos) break;
    pos = nl + 1;
    ++line;
  }
  return out;
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

// The knd entries of a DeviceClass / ResourceClaim / ResourceClaimTemplate document.
void CollectEntries(const nlohmann::json& doc, std::vector<Entry>& entries, Context& ctx) {
  using nlohmann::json;
  std::string kind = doc.value("kind", "");
  const json meta = doc.value("metadata", json::object());
  json configs = json::array();
  Source source = Source::kClaim;
  const json spec = doc.value("spec", json::object());
  if (kind == "DeviceClass") {
    source = Source::kClass;
    configs = spec.value("config", json::array());
  } else if (kind == "ResourceClaim" || kind == "ResourceClaimTemplate") {
    json devices = kind == "ResourceClaimTemplate"
                       ? spec.value("spec", json::object()).value("devices", json::object())
                       : spec.value("devices", json::object());
    configs = devices.value("config", json::array());
    ctx.claim_namespace = meta.value("namespace", "default");
    ctx.claim_name = meta.value("name", "");
    json requests = devices.value("requests", json::array());
    if (!requests.empty()) ctx.request = requests[0].value("name", "");
  }
  for (const json& c : configs) {
    if (!c.contains("opaque") || c["opaque"].value("driver", "") != "knd.k8s.cni.cncf.io") continue;
    entries.push_back(
        {source, c.value("requests", std::vector<std::string>()), c["opaque"]["parameters"]});
  }
}

TEST(DocsExamplesTest, EveryExampleBehavesAsDocumented) {
  const char* src = std::getenv("KND_SOURCE_DIR");
  std::string path = std::string(src ? src : KND_DOCS_FALLBACK_DIR) + "/docs/network-config.md";
  auto md = ReadFile(path);
  ASSERT_TRUE(md.ok()) << md.status();
  int valid = 0, invalid = 0, objects = 0;
  for (const Block& b : YamlBlocks(*md)) {
    std::string first = FirstLine(b.text);
    const std::string kInvalid = "# invalid: ";
    bool expect_fail = first.rfind(kInvalid, 0) == 0;
    std::string body = expect_fail ? b.text.substr(b.text.find('\n') + 1) : b.text;
    std::string api = FirstLine(body);
    SCOPED_TRACE("docs/network-config.md example at line " + std::to_string(b.line));
    absl::Status result;
    if (api == "apiVersion: knd.k8s.cni.cncf.io/v1alpha1") {
      auto j = ParseYaml(body);
      ASSERT_TRUE(j.ok()) << j.status();
      auto cfg = Decode(*j, "example");
      result = cfg.ok() ? Validate(*cfg, "example") : cfg.status();
    } else if (api == "apiVersion: resource.k8s.io/v1") {
      // Kubernetes objects: run their knd entries through Resolve, as Prepare does.
      auto docs = ParseYamlAll(body);
      ASSERT_TRUE(docs.ok()) << docs.status();
      std::vector<Entry> entries;
      Context ctx{"default", "example", "nic"};
      for (const auto& d : *docs) CollectEntries(d, entries, ctx);
      ASSERT_FALSE(entries.empty()) << "example without a knd config entry";
      ++objects;
      result = Resolve(entries, ctx).status();
    } else {
      continue;
    }
    if (expect_fail) {
      ++invalid;
      ASSERT_FALSE(result.ok()) << "documented as invalid but accepted";
      EXPECT_THAT(std::string(result.message()),
                  ::testing::HasSubstr(first.substr(kInvalid.size())));
    } else {
      ++valid;
      EXPECT_TRUE(result.ok()) << result;
    }
  }
  // The reference must keep showing both kinds; an empty extraction means the test rotted.
  EXPECT_GE(valid, 5);
  EXPECT_GE(invalid, 3);
  EXPECT_GE(objects, 3);
}

// Every YAML block in every document (README.md, docs/*.md) parses, and every knd
// NetworkConfig in it, bare or inside a DeviceClass / ResourceClaim(Template), is accepted
// unless the block is marked `# invalid: <text>` (then it must be refused with <text>).
TEST(DocsExamplesTest, EveryYamlBlockInTheDocsParsesAndItsConfigsResolve) {
  const char* src = std::getenv("KND_SOURCE_DIR");
  const std::string root = src ? src : KND_DOCS_FALLBACK_DIR;
  std::vector<std::string> files = {root + "/README.md"};
  for (const auto& e : std::filesystem::directory_iterator(root + "/docs")) {
    if (e.path().extension() == ".md") files.push_back(e.path().string());
  }
  int blocks = 0, configs = 0;
  for (const std::string& file : files) {
    auto md = ReadFile(file);
    ASSERT_TRUE(md.ok()) << md.status();
    for (const Block& b : YamlBlocks(*md)) {
      SCOPED_TRACE(file + ": yaml example at line " + std::to_string(b.line));
      const std::string kInvalid = "# invalid: ";
      std::string first = FirstLine(b.text);
      bool expect_fail = first.rfind(kInvalid, 0) == 0;
      auto docs = ParseYamlAll(b.text);
      ASSERT_TRUE(docs.ok()) << docs.status();
      ++blocks;
      absl::Status result;
      for (const auto& d : *docs) {
        if (!d.is_object()) continue;
        if (d.value("apiVersion", "") == "knd.k8s.cni.cncf.io/v1alpha1") {
          ++configs;
          auto cfg = Decode(d, "example");
          absl::Status st = cfg.ok() ? Validate(*cfg, "example") : cfg.status();
          if (result.ok()) result = st;
          continue;
        }
        if (d.value("apiVersion", "") != "resource.k8s.io/v1") continue;
        std::vector<Entry> entries;
        Context ctx{"default", "example", "nic"};
        CollectEntries(d, entries, ctx);
        for (const Entry& e : entries) {
          ++configs;
          Context one = ctx;
          if (!e.requests.empty()) one.request = e.requests[0];
          absl::Status st = Resolve({e}, one).status();
          if (result.ok()) result = st;
        }
      }
      if (expect_fail) {
        ASSERT_FALSE(result.ok()) << "documented as invalid but accepted";
        EXPECT_THAT(std::string(result.message()),
                    ::testing::HasSubstr(first.substr(kInvalid.size())));
      } else {
        EXPECT_TRUE(result.ok()) << result;
      }
    }
  }
  EXPECT_GE(blocks, 10) << "no YAML found in the docs: the extraction rotted";
  EXPECT_GE(configs, 5);
}

// Every node config in the docs (a YAML block whose first line starts "# Node config") is one
// the driver accepts.
TEST(DocsExamplesTest, EveryNodeConfigInTheDocsIsAccepted) {
  const char* src = std::getenv("KND_SOURCE_DIR");
  const std::string root = src ? src : KND_DOCS_FALLBACK_DIR;
  int node_configs = 0;
  for (const auto& e : std::filesystem::directory_iterator(root + "/docs")) {
    if (e.path().extension() != ".md") continue;
    auto md = ReadFile(e.path().string());
    ASSERT_TRUE(md.ok()) << md.status();
    for (const Block& b : YamlBlocks(*md)) {
      if (FirstLine(b.text).rfind("# Node config", 0) != 0) continue;
      SCOPED_TRACE(e.path().string() + ": node config at line " + std::to_string(b.line));
      ++node_configs;
      auto cfg = ParseNodeConfig(b.text, "example");
      EXPECT_TRUE(cfg.ok()) << cfg.status();
    }
  }
  EXPECT_GE(node_configs, 3) << "no node configs found in the docs: the extraction rotted";
}

}  // namespace
}  // namespace knd::config
