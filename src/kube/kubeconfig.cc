// Kubeconfig and in-cluster configuration loading (declared in kube/client.h).
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "kube/client.h"

namespace knd::kube {
namespace {

namespace fs = std::filesystem;

// Finds the entry named `name` in a kubeconfig list (clusters/users/contexts) and returns its
// inner map (`key`), e.g. clusters[i].cluster.
absl::StatusOr<YAML::Node> FindNamed(const YAML::Node& root, const std::string& list,
                                     const std::string& key, const std::string& name,
                                     const std::string& where) {
  YAML::Node items = root[list];
  if (items && !items.IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": `", list, "` is not a list"));
  }
  if (items) {
    for (const auto& item : items) {
      if (item.IsMap() && item["name"] && item["name"].as<std::string>() == name) {
        YAML::Node inner = item[key];
        if (inner && !inner.IsMap() && !inner.IsNull()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": ", list, "[", name, "].", key, " is not a map"));
        }
        return inner ? inner : YAML::Node(YAML::NodeType::Map);
      }
    }
  }
  return absl::NotFoundError(
      absl::StrCat(where, ": no entry named \"", name, "\" in `", list, "`"));
}

std::string Str(const YAML::Node& m, const char* key) {
  if (!m || !m.IsMap() || !m[key] || !m[key].IsScalar()) return "";
  return m[key].as<std::string>();
}

absl::StatusOr<std::string> DecodeData(const YAML::Node& m, const char* key,
                                       const std::string& where) {
  std::string encoded = Str(m, key);
  if (encoded.empty()) return std::string();
  std::string out;
  if (!absl::Base64Unescape(encoded, &out)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": field ", key, " is not valid base64"));
  }
  return out;
}

std::string Resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

absl::StatusOr<ClientConfig> ParseKubeconfig(const YAML::Node& root, const std::string& path,
                                             const std::string& context) {
  const std::string where = absl::StrCat("kubeconfig ", path);
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(where, ": not a YAML map"));
  std::string ctx_name = context.empty() ? Str(root, "current-context") : context;
  if (ctx_name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": no context given and `current-context` is not set"));
  }
  ASSIGN_OR_RETURN(YAML::Node ctx, FindNamed(root, "contexts", "context", ctx_name, where));
  std::string cluster_name = Str(ctx, "cluster");
  if (cluster_name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": context \"", ctx_name, "\" has no `cluster`"));
  }
  ASSIGN_OR_RETURN(YAML::Node cluster, FindNamed(root, "clusters", "cluster", cluster_name, where));
  const std::string dir = fs::path(path).parent_path().string();

  ClientConfig cfg;
  cfg.server = Str(cluster, "server");
  if (cfg.server.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": cluster \"", cluster_name, "\" has no `server`"));
  }
  if (cfg.server.rfind("https://", 0) != 0 && cfg.server.rfind("http://", 0) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": cluster \"", cluster_name,
                                                   "\": server \"", cfg.server,
                                                   "\" is not an http(s):// URL"));
  }
  const std::string cwhere = absl::StrCat(where, ": cluster \"", cluster_name, "\"");
  cfg.ca_file = Resolve(dir, Str(cluster, "certificate-authority"));
  ASSIGN_OR_RETURN(cfg.ca_data, DecodeData(cluster, "certificate-authority-data", cwhere));
  std::string insecure = Str(cluster, "insecure-skip-tls-verify");
  cfg.insecure_skip_tls_verify = insecure == "true";

  std::string user_name = Str(ctx, "user");
  if (!user_name.empty()) {
    ASSIGN_OR_RETURN(YAML::Node user, FindNamed(root, "users", "user", user_name, where));
    const std::string uwhere = absl::StrCat(where, ": user \"", user_name, "\"");
    cfg.bearer_token = Str(user, "token");
    cfg.bearer_token_file = Resolve(dir, Str(user, "tokenFile"));
    cfg.client_cert_file = Resolve(dir, Str(user, "client-certificate"));
    cfg.client_key_file = Resolve(dir, Str(user, "client-key"));
    ASSIGN_OR_RETURN(cfg.client_cert_data, DecodeData(user, "client-certificate-data", uwhere));
    ASSIGN_OR_RETURN(cfg.client_key_data, DecodeData(user, "client-key-data", uwhere));
    bool has_cert = !cfg.client_cert_file.empty() || !cfg.client_cert_data.empty();
    bool has_key = !cfg.client_key_file.empty() || !cfg.client_key_data.empty();
    if (has_cert != has_key) {
      return absl::InvalidArgumentError(
          absl::StrCat(uwhere, ": client-certificate and client-key must be given together (only ",
                       has_cert ? "the certificate" : "the key", " is set)"));
    }
    bool has_token = !cfg.bearer_token.empty() || !cfg.bearer_token_file.empty();
    if (!has_token && !has_cert && (user["exec"] || user["auth-provider"])) {
      return absl::UnimplementedError(
          absl::StrCat(uwhere,
                       ": exec and auth-provider credentials are not supported; use a "
                       "token, tokenFile or client certificate"));
    }
    if (!cfg.bearer_token_file.empty() && cfg.bearer_token.empty()) {
      // Fail early on a missing token file; the client re-reads it on rotation.
      auto tok = ReadFile(cfg.bearer_token_file);
      if (!tok.ok()) return Annotate(tok.status(), absl::StrCat(uwhere, ": tokenFile"));
    }
  }
  for (const auto* f : {&cfg.ca_file, &cfg.client_cert_file, &cfg.client_key_file}) {
    if (!f->empty() && !fs::exists(*f)) {
      return absl::NotFoundError(absl::StrCat(where, ": file ", *f, " does not exist"));
    }
  }
  return cfg;
}

}  // namespace

absl::StatusOr<ClientConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": ", e.what()));
  }
  try {
    return ParseKubeconfig(root, path, context);
  } catch (const YAML::Exception& e) {
    // Type mismatches (e.g. a list where a string belongs) surface here.
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig ", path, ": ", e.what()));
  }
}

absl::StatusOr<ClientConfig> InClusterConfig(const std::string& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
  }
  std::string h(host);
  if (h.find(':') != std::string::npos) h = absl::StrCat("[", h, "]");  // IPv6 literal
  ClientConfig cfg;
  cfg.server = absl::StrCat("https://", h, ":", port);
  cfg.bearer_token_file = (fs::path(sa_dir) / "token").string();
  auto tok = ReadFile(cfg.bearer_token_file);
  if (!tok.ok()) return Annotate(tok.status(), "in-cluster config: service-account token");
  std::string ca = (fs::path(sa_dir) / "ca.crt").string();
  if (!fs::exists(ca)) {
    return absl::NotFoundError(absl::StrCat("in-cluster config: CA file ", ca, " does not exist"));
  }
  cfg.ca_file = ca;
  return cfg;
}

}  // namespace knd::kube
