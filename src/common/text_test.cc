#include "common/text.h"

#include <gtest/gtest.h>

namespace knd {
namespace {

TEST(TextTest, ValidUtf8KeepsValidTextAndReplacesEveryBadByte) {
  EXPECT_EQ(ValidUtf8("eth0"), "eth0");
  EXPECT_EQ(ValidUtf8("n\xC3\xA4t0"), "n\xC3\xA4t0");            // "nät0"
  EXPECT_EQ(ValidUtf8("\xF0\x9F\x8C\x90"), "\xF0\x9F\x8C\x90");  // U+1F310
  EXPECT_EQ(ValidUtf8("a\xFF"
                      "b"),
            "a\xEF\xBF\xBD"
            "b");                                                                // not a lead byte
  EXPECT_EQ(ValidUtf8("\xC3"), "\xEF\xBF\xBD");                                  // cut short
  EXPECT_EQ(ValidUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(ValidUtf8("\xF4\x90\x80\x80").find("\xF4"), std::string::npos);      // > U+10FFFF
}

TEST(TextTest, ClampUtf8NeverCutsACharacter) {
  EXPECT_EQ(ClampUtf8("eth0", 10), "eth0");
  EXPECT_EQ(ClampUtf8("eth0", 3), "eth");
  // "ä" is two bytes: a cut after its first byte drops it whole.
  EXPECT_EQ(ClampUtf8("a\xC3\xA4", 2), "a");
  EXPECT_EQ(ClampUtf8("a\xC3\xA4", 3), "a\xC3\xA4");
}

TEST(TextTest, DumpJsonDoesNotThrowOnKernelBytes) {
  nlohmann::json j = {{"ifname", std::string("net\xFF\xFE")}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);  // what it protects against
  std::string out;
  ASSERT_NO_THROW(out = DumpJson(j));
  EXPECT_EQ(out, "{\"ifname\":\"net\xEF\xBF\xBD\xEF\xBF\xBD\"}");
  EXPECT_EQ(nlohmann::json::parse(out)["ifname"], "net\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TextTest, JsonFieldsOfTheWrongTypeGiveTheDefault) {
  const nlohmann::json j = nlohmann::json::parse(R"({"s": "x", "n": 5, "b": true, "o": {}})");
  EXPECT_EQ(JsonString(j, "s"), "x");
  EXPECT_EQ(JsonString(j, "n"), "");  // j.value("n", "") throws type_error here
  EXPECT_EQ(JsonString(j, "missing", "d"), "d");
  EXPECT_EQ(JsonString(nlohmann::json::array({1}), "s", "d"), "d");
  EXPECT_EQ(JsonString(nlohmann::json(), "s"), "");
  EXPECT_TRUE(JsonBool(j, "b", false));
  EXPECT_FALSE(JsonBool(j, "s", false));
  EXPECT_TRUE(JsonBool(j, "o", true));
  EXPECT_FALSE(JsonBool(nlohmann::json("b"), "b", false));
}

TEST(Fnv1a64Test, ReferenceValues) {
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
}

}  // namespace
}  // namespace knd
