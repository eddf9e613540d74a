#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/escaping.h"
#include "kube/client.h"

namespace knd::kube {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-kubeconfig-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::string& text) {
    std::string p = dir_ + "/" + name;
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }
  std::string dir_;
};

constexpr char kTwoContexts[] = R"(
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c-dev
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority: certs/ca.pem
- name: c-prod
  cluster:
    server: https://prod.example:443
    certificate-authority-data: LS0tQ0EtLS0=
    insecure-skip-tls-verify: true
users:
- name: u-token
  user:
    token: abc123
- name: u-certs
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: dev
  context: {cluster: c-dev, user: u-token}
- name: prod
  context: {cluster: c-prod, user: u-certs}
)";

TEST_F(KubeconfigTest, CurrentContextTokenAndRelativeCaFile) {
  Write("certs/ca.pem", "CA");
  auto cfg = LoadKubeconfig(Write("kc.yaml", kTwoContexts));
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->server, "https://10.0.0.1:6443");
  EXPECT_EQ(cfg->bearer_token, "abc123");
  EXPECT_EQ(cfg->ca_file, dir_ + "/certs/ca.pem");
  EXPECT_FALSE(cfg->insecure_skip_tls_verify);
  EXPECT_TRUE(cfg->client_cert_data.empty());
}

TEST_F(KubeconfigTest, NamedContextDecodesDataFields) {
  Write("certs/ca.pem", "CA");
  auto cfg = LoadKubeconfig(Write("kc.yaml", kTwoContexts), "prod");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->server, "https://prod.example:443");
  EXPECT_EQ(cfg->ca_data, "---CA---");
  EXPECT_EQ(cfg->client_cert_data, "CERT");
  EXPECT_EQ(cfg->client_key_data, "KEY");
  EXPECT_TRUE(cfg->insecure_skip_tls_verify);
  EXPECT_TRUE(cfg->bearer_token.empty());
}

TEST_F(KubeconfigTest, CertKeyFilesAndTokenFile) {
  Write("pki/client.crt", "C");
  Write("/abs.key", "K");
  Write("tok", "t0k\n");
  auto cfg = LoadKubeconfig(Write("sub/kc.yaml", R"(
current-context: x
clusters: [{name: c, cluster: {server: "http://127.0.0.1:8080"}}]
users:
- name: u
  user:
    client-certificate: ../pki/client.crt
    client-key: )" + dir_ + R"(/abs.key
    tokenFile: ../tok
contexts: [{name: x, context: {cluster: c, user: u}}]
)"));
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->server, "http://127.0.0.1:8080");
  EXPECT_EQ(cfg->client_cert_file, dir_ + "/pki/client.crt");
  EXPECT_EQ(cfg->client_key_file, dir_ + "/abs.key");
  EXPECT_EQ(cfg->bearer_token_file, dir_ + "/tok");
}

TEST_F(KubeconfigTest, ClearErrors) {
  Write("certs/ca.pem", "CA");
  std::string kc = Write("kc.yaml", kTwoContexts);
  auto r = LoadKubeconfig(kc, "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("no entry named \"nope\""));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("contexts"));

  r = LoadKubeconfig(Write("k2.yaml", "clusters: []\ncontexts: []\n"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("current-context"));

  r = LoadKubeconfig(Write("k3.yaml", R"(
current-context: x
clusters: [{name: c, cluster: {}}]
contexts: [{name: x, context: {cluster: c}}]
)"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("cluster \"c\" has no `server`"));

  r = LoadKubeconfig(Write("k4.yaml", R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://a"}}]
contexts: [{name: x, context: {cluster: c, user: ghost}}]
)"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"ghost\""));

  r = LoadKubeconfig(Write("k5.yaml", R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://a"}}]
users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
)"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("client-key"));

  r = LoadKubeconfig(Write("k6.yaml", R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://a", certificate-authority-data: "!!notbase64"}}]
contexts: [{name: x, context: {cluster: c}}]
)"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("certificate-authority-data"));

  r = LoadKubeconfig(Write("k7.yaml", R"(
current-context: x
clusters: [{name: c, cluster: {server: "https://a", certificate-authority: missing.pem}}]
contexts: [{name: x, context: {cluster: c}}]
)"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("missing.pem"));

  r = LoadKubeconfig(dir_ + "/does-not-exist");
  EXPECT_TRUE(absl::IsNotFound(r.status()));

  r = LoadKubeconfig(Write("k8.yaml", "a: [unclosed\n"));
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
}

TEST_F(KubeconfigTest, InCluster) {
  Write("sa/token", "sa-token\n");
  Write("sa/ca.crt", "CA");
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto cfg = InClusterConfig(dir_ + "/sa");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->server, "https://10.96.0.1:443");
  EXPECT_EQ(cfg->bearer_token_file, dir_ + "/sa/token");
  EXPECT_EQ(cfg->ca_file, dir_ + "/sa/ca.crt");

  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  cfg = InClusterConfig(dir_ + "/sa");
  ASSERT_TRUE(cfg.ok());
  EXPECT_EQ(cfg->server, "https://[fd00::1]:443");

  auto bad = InClusterConfig(dir_ + "/nosa");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("token"));

  unsetenv("KUBERNETES_SERVICE_HOST");
  bad = InClusterConfig(dir_ + "/sa");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("KUBERNETES_SERVICE_HOST"));
  unsetenv("KUBERNETES_SERVICE_PORT");
}

}  // namespace
}  // namespace knd::kube
