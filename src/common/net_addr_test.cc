#include "common/net_addr.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace knd {
namespace {

using ::testing::HasSubstr;

std::string Message(const absl::Status& st) { return std::string(st.message()); }

TEST(ParseIp, AcceptsTheCanonicalFormsOfBothFamilies) {
  absl::StatusOr<IpAddr> v4 = ParseIp("192.0.2.10");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(v4->len(), 4u);
  EXPECT_EQ(FormatIp(*v4), "192.0.2.10");
  absl::StatusOr<IpAddr> v6 = ParseIp("2001:DB8:0::10");  // uppercase, not compressed
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(FormatIp(*v6), "2001:db8::10");
  absl::StatusOr<IpAddr> mapped = ParseIp("::ffff:192.0.2.1");
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ(mapped->family, AF_INET6);
  EXPECT_TRUE(ParseIp("0.0.0.0").ok());
  EXPECT_TRUE(ParseIp("::").ok());
}

TEST(ParseIp, RefusesWhatOtherParsersReadDifferently) {
  // Leading zeros: octal to inet_aton, decimal to others.
  for (const char* s : {"010.0.0.1", "192.0.2.01", "00.1.2.3"}) {
    absl::StatusOr<IpAddr> ip = ParseIp(s);
    ASSERT_FALSE(ip.ok()) << s;
    EXPECT_EQ(ip.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Message(ip.status()),
              "\"" + std::string(s) + "\" is not an IP address (leading zeros are not allowed)");
  }
  absl::StatusOr<IpAddr> zone = ParseIp("fe80::1%eth0");
  ASSERT_FALSE(zone.ok());
  EXPECT_THAT(Message(zone.status()), HasSubstr("\"fe80::1%eth0\" is not an IP address"));
  EXPECT_THAT(Message(zone.status()), HasSubstr("an IPv6 zone such as \"%eth0\" is not allowed"));
  EXPECT_THAT(Message(ParseIp("[2001:db8::1]").status()), HasSubstr("without brackets"));
  for (const char* s : {"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.4 ", " 1.2.3.4", "0x1.2.3.4",
                        "1:2:3:4:5:6:7:8:9", "2001:db8::g", "192.0.2.1/24", "gw"}) {
    absl::StatusOr<IpAddr> ip = ParseIp(s);
    ASSERT_FALSE(ip.ok()) << s;
    EXPECT_EQ(Message(ip.status()), "\"" + std::string(s) + "\" is not an IP address") << s;
  }
}

TEST(ParseCidr, AddressAndPrefixInRange) {
  absl::StatusOr<IpPrefix> c = ParseCidr("192.0.2.10/24");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->prefix, 24);
  EXPECT_EQ(FormatCidr(*c), "192.0.2.10/24") << "host bits are kept";
  for (const char* ok : {"0.0.0.0/0", "192.0.2.1/32", "::/0", "2001:db8::1/128", "2001:DB8::/32"}) {
    EXPECT_TRUE(ParseCidr(ok).ok()) << ok;
  }
  EXPECT_EQ(FormatCidr(*ParseCidr("2001:DB8:0:0::/32")), "2001:db8::/32");
}

TEST(ParseCidr, NamesWhatIsWrong) {
  struct Bad {
    const char* in;
    const char* msg;
  };
  for (const Bad& b : std::initializer_list<Bad>{
           {"192.0.2.1", "\"192.0.2.1\" is not a CIDR (expected address/prefix-length)"},
           {"192.0.2.1/33", "\"192.0.2.1/33\": prefix length must be 0..32"},
           {"2001:db8::/129", "\"2001:db8::/129\": prefix length must be 0..128"},
           {"192.0.2.1/-1", "\"192.0.2.1/-1\": prefix length must be 0..32"},
           {"192.0.2.1/+8", "\"192.0.2.1/+8\": prefix length must be 0..32"},
           {"192.0.2.1/-0", "\"192.0.2.1/-0\": prefix length must be 0..32"},
           {"192.0.2.1/", "\"192.0.2.1/\": prefix length must be 0..32"},
           {"192.0.2.1/ 8", "\"192.0.2.1/ 8\": prefix length must be 0..32"},
           {"192.0.2.1/8x", "\"192.0.2.1/8x\": prefix length must be 0..32"},
           {"192.0.2.1/99999999999", "\"192.0.2.1/99999999999\": prefix length must be 0..32"},
           {"192.0.2.1/08", "\"192.0.2.1/08\": prefix length must be 0..32, without leading zeros"},
           {"192.0.2.1/24/8", "\"192.0.2.1/24/8\": prefix length must be 0..32"},
           {"192.0.2.300/24", "\"192.0.2.300/24\": invalid IP address"},
           {"192.0.2.010/24",
            "\"192.0.2.010/24\": invalid IP address (leading zeros are not allowed)"},
           {"fe80::1%eth0/64",
            "\"fe80::1%eth0/64\": invalid IP address (an IPv6 zone such as \"%eth0\" is not "
            "allowed: it names an interface of the host)"},
           {"/24", "\"/24\": invalid IP address"},
       }) {
    absl::StatusOr<IpPrefix> c = ParseCidr(b.in);
    ASSERT_FALSE(c.ok()) << b.in;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << b.in;
    EXPECT_EQ(Message(c.status()), b.msg);
  }
}

TEST(ParseIpOrCidr, ABareAddressIsTheHostPrefix) {
  EXPECT_EQ(ParseIpOrCidr("192.0.2.1")->prefix, 32);
  EXPECT_EQ(ParseIpOrCidr("2001:db8::1")->prefix, 128);
  EXPECT_EQ(ParseIpOrCidr("2001:db8::/64")->prefix, 64);
  EXPECT_EQ(Message(ParseIpOrCidr("gw").status()), "\"gw\" is not an IP address");
  EXPECT_THAT(Message(ParseIpOrCidr("192.0.2.1/40").status()), HasSubstr("must be 0..32"));
}

TEST(FormatIp, BinaryFormsAndTruncatedAttributes) {
  in_addr v4;
  ASSERT_EQ(inet_pton(AF_INET, "192.0.2.10", &v4), 1);
  EXPECT_EQ(FormatCidr(AF_INET, &v4, 4, 24), "192.0.2.10/24");
  EXPECT_EQ(FormatCidr(AF_INET, &v4, 3, 24), "");  // truncated attribute
  in6_addr v6;
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::10", &v6), 1);
  EXPECT_EQ(FormatCidr(AF_INET6, &v6, 16, 64), "2001:db8::10/64");
  EXPECT_EQ(FormatIp(AF_INET6, &v6, 16), "2001:db8::10");
  EXPECT_EQ(FormatIp(AF_INET6, &v6, 4), "");
  EXPECT_EQ(FormatIp(AF_PACKET, &v6, 16), "");
}

TEST(ParseMac, SixHexPairsWithColonsEitherCase) {
  absl::StatusOr<MacAddr> mac = ParseMac("02:AB:00:10:ff:01");
  ASSERT_TRUE(mac.ok()) << mac.status();
  EXPECT_EQ(*mac, (MacAddr{0x02, 0xab, 0x00, 0x10, 0xff, 0x01}));
  EXPECT_EQ(FormatMac(*mac), "02:ab:00:10:ff:01");
  EXPECT_EQ(NormalizeMac("02:AB:00:10:FF:01"), "02:ab:00:10:ff:01");
  EXPECT_EQ(NormalizeMac("not a mac"), "not a mac");
  const uint8_t ipoib[3] = {0x80, 0x00, 0x0A};
  EXPECT_EQ(FormatMac(ipoib, 3), "80:00:0a");
  EXPECT_EQ(FormatMac(ipoib, 0), "");
}

TEST(ParseMac, WrongLengthAndShapeAreNamed) {
  EXPECT_EQ(Message(ParseMac("02:ab:00:10:ff").status()),
            "\"02:ab:00:10:ff\" is not a MAC address: 5 bytes, expected 6 (like "
            "02:00:00:00:00:01)");
  EXPECT_EQ(Message(ParseMac("02:ab:00:10:ff:01:02").status()),
            "\"02:ab:00:10:ff:01:02\" is not a MAC address: 7 bytes, expected 6 (like "
            "02:00:00:00:00:01)");
  // What ether_aton_r would take: single digits, something after the sixth byte.
  for (const char* bad : {"", "02:ab:00:10:ff:01:", "02-ab-00-10-ff-01", "02:ab:00:10:ff:0g",
                          "2:ab:00:10:ff:011", " 02:ab:00:10:ff:1", "2:0:0:0:0:1",
                          "02:00:00:00:00:01x", "02:00:00:00:00:01 junk", "0200.0000.0001"}) {
    absl::StatusOr<MacAddr> got = ParseMac(bad);
    ASSERT_FALSE(got.ok()) << bad;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Message(got.status()),
              "\"" + std::string(bad) +
                  "\" is not a MAC address (expected six hex bytes like 02:00:00:00:00:01)")
        << bad;
  }
}

}  // namespace
}  // namespace knd
