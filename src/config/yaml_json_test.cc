// Tests of the YAML → JSON converter: the scalar typing rules people rely on when they write
// YAML (quoted numbers stay strings, MACs stay strings, ints are ints).
#include "config/yaml_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace knd::config {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

TEST(YamlJsonTest, ScalarTyping) {
  auto got = ParseYaml(R"(
int: 9000
neg: -5
big: 18446744073709551615
float: 1.5
quoted_int: "9000"
single_quoted: '42'
tagged: !!str 7
yes_true: true
no_false: false
word_yes: yes
nul: null
tilde: ~
empty:
mac: 02:00:00:00:00:01
cidr: 192.0.2.10/24
octal_looking: 0755
version: 1.0.0
)");
  ASSERT_TRUE(got.ok()) << got.status();
  const json& j = *got;
  EXPECT_EQ(j["int"], json(9000));
  EXPECT_TRUE(j["int"].is_number_integer());
  EXPECT_EQ(j["neg"], json(-5));
  EXPECT_EQ(j["big"].get<uint64_t>(), 18446744073709551615ULL);
  EXPECT_TRUE(j["float"].is_number_float());
  EXPECT_EQ(j["quoted_int"], json("9000"));
  EXPECT_EQ(j["single_quoted"], json("42"));
  EXPECT_EQ(j["tagged"], json("7"));
  EXPECT_EQ(j["yes_true"], json(true));
  EXPECT_EQ(j["no_false"], json(false));
  EXPECT_EQ(j["word_yes"], json("yes"));  // YAML 1.2: only true/false are booleans
  EXPECT_TRUE(j["nul"].is_null());
  EXPECT_TRUE(j["tilde"].is_null());
  EXPECT_TRUE(j["empty"].is_null());
  EXPECT_EQ(j["mac"], json("02:00:00:00:00:01"));
  EXPECT_EQ(j["cidr"], json("192.0.2.10/24"));
  EXPECT_EQ(j["octal_looking"], json(755));  // decimal, never octal
  EXPECT_EQ(j["version"], json("1.0.0"));
}

TEST(YamlJsonTest, NestedAndFlowStyle) {
  auto got = ParseYaml("a: {b: [1, \"2\", {c: x}]}\nlist:\n- 1\n- two\n");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, json::parse(R"({"a": {"b": [1, "2", {"c": "x"}]}, "list": [1, "two"]})"));
}

TEST(YamlJsonTest, DuplicateKeyRefused) {
  auto got = ParseYaml("a: 1\nb: 2\na: 3\n");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("duplicate key \"a\" at line 3"));
}

TEST(YamlJsonTest, SyntaxErrorIsStatus) {
  auto got = ParseYaml("a: [1, 2\n");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("invalid YAML"));
}

TEST(YamlJsonTest, MultiDocument) {
  auto got = ParseYamlAll("a: 1\n---\n---\nb: 2\n");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[1], json::parse(R"({"b": 2})"));
}

}  // namespace
}  // namespace knd::config
