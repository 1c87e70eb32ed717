#include "dataplane/wire/envelope.h"

#include <string>

#include "gtest/gtest.h"

namespace zmesh::wire {
namespace {

v1::Header CallHeader() {
  v1::Header h;
  h.set_kind(v1::KIND_CALL);
  h.set_message_id(7);
  h.set_sender("host/1/1/abcd");
  h.mutable_target()->set_exchange("openstack");
  h.mutable_target()->set_topic("compute");
  h.mutable_target()->set_server("node-1");
  return h;
}

TEST(EnvelopeTest, RoundTripsAValidCall) {
  const std::string bytes = EncodeHeader(CallHeader());
  Decoded d = DecodeHeader(bytes, 100, kDefaultMaxPayloadBytes);
  ASSERT_TRUE(d.ok()) << d.detail;
  EXPECT_EQ(d.header.version(), v1::VERSION_1);
  EXPECT_EQ(d.header.message_id(), 7u);
  EXPECT_EQ(d.header.target().server(), "node-1");
}

TEST(EnvelopeTest, GarbageIsABadMessageWithoutAReadableHeader) {
  Decoded d = DecodeHeader(std::string("\xff\xff\xff\xff\x0f", 5), 0, kDefaultMaxPayloadBytes);
  EXPECT_EQ(d.status, v1::STATUS_BAD_MESSAGE);
  EXPECT_FALSE(d.header_readable);
}

TEST(EnvelopeTest, WrongVersionIsRefusedButAnswerable) {
  v1::Header h = CallHeader();
  std::string bytes = EncodeHeader(h);
  h.ParseFromString(bytes);
  h.set_version(static_cast<v1::Version>(2));
  Decoded d = DecodeHeader(h.SerializeAsString(), 0, kDefaultMaxPayloadBytes);
  EXPECT_EQ(d.status, v1::STATUS_BAD_MESSAGE);
  EXPECT_TRUE(d.header_readable);
  EXPECT_NE(d.detail.find("version 2"), std::string::npos) << d.detail;
}

TEST(EnvelopeTest, CallWithoutServerIsRefusedNamingTheField) {
  v1::Header h = CallHeader();
  h.mutable_target()->clear_server();
  Decoded d = DecodeHeader(EncodeHeader(h), 0, kDefaultMaxPayloadBytes);
  EXPECT_EQ(d.status, v1::STATUS_BAD_MESSAGE);
  EXPECT_NE(d.detail.find("target.server"), std::string::npos) << d.detail;
}

TEST(EnvelopeTest, FanoutNeedsNoServer) {
  v1::Header h = CallHeader();
  h.set_kind(v1::KIND_FANOUT);
  h.mutable_target()->clear_server();
  EXPECT_TRUE(DecodeHeader(EncodeHeader(h), 0, kDefaultMaxPayloadBytes).ok());
}

TEST(EnvelopeTest, OversizedPayloadIsTooLarge) {
  Decoded d = DecodeHeader(EncodeHeader(CallHeader()), 1025, 1024);
  EXPECT_EQ(d.status, v1::STATUS_TOO_LARGE);
  EXPECT_TRUE(d.header_readable);
}

TEST(EnvelopeTest, ZeroMessageIdIsRefused) {
  v1::Header h = CallHeader();
  h.set_message_id(0);
  Decoded d = DecodeHeader(EncodeHeader(h), 0, kDefaultMaxPayloadBytes);
  EXPECT_EQ(d.status, v1::STATUS_BAD_MESSAGE);
  EXPECT_FALSE(d.header_readable);
}

TEST(EnvelopeTest, ControlCharacterInTopicIsRefused) {
  v1::Header h = CallHeader();
  h.mutable_target()->set_topic(std::string("a\nb"));
  Decoded d = DecodeHeader(EncodeHeader(h), 0, kDefaultMaxPayloadBytes);
  EXPECT_EQ(d.status, v1::STATUS_BAD_MESSAGE);
  EXPECT_NE(d.detail.find("target.topic"), std::string::npos) << d.detail;
}

TEST(EnvelopeTest, OversizedHeaderIsRefused) {
  std::string big(kMaxHeaderBytes + 1, 'x');
  EXPECT_EQ(DecodeHeader(big, 0, kDefaultMaxPayloadBytes).status, v1::STATUS_BAD_MESSAGE);
}

}  // namespace
}  // namespace zmesh::wire
