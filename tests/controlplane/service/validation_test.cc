#include "controlplane/service/validation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace zmesh::service {
namespace {

namespace dir = ::zmesh::directory::v1;
using ::testing::HasSubstr;

std::string Message(const absl::Status& status) { return std::string(status.message()); }

TEST(ValidationTest, NamesAcceptPrintableCharactersLikeHostAtBackend) {
  EXPECT_TRUE(ValidateName("server", "host@backend").ok());
  EXPECT_TRUE(ValidateName("server", "compute-1.example.org:pool/α").ok());
  EXPECT_TRUE(ValidateName("server", std::string(255, 'x')).ok());
}

TEST(ValidationTest, NamesRejectEmptyLongAndControlCharacters) {
  absl::Status empty = ValidateName("node.name", "");
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(empty), "node.name: must not be empty");
  EXPECT_TRUE(ValidateName("pool", "", /*allow_empty=*/true).ok());

  absl::Status long_name = ValidateName("topic", std::string(256, 'x'));
  EXPECT_THAT(Message(long_name), HasSubstr("topic: 256 bytes"));

  absl::Status nul = ValidateName("server", std::string("a\0b", 3));
  EXPECT_THAT(Message(nul), HasSubstr("server: control character 0x00 at byte 1"));
  EXPECT_FALSE(ValidateName("server", "a\nb").ok());
  EXPECT_FALSE(ValidateName("server", "a\x7f").ok());
}

TEST(ValidationTest, PortsAndTtlsHaveBounds) {
  EXPECT_TRUE(ValidatePort("call_port", 1).ok());
  EXPECT_TRUE(ValidatePort("call_port", 65535).ok());
  EXPECT_THAT(Message(ValidatePort("node.call_port", 0)), HasSubstr("node.call_port: 0"));
  EXPECT_FALSE(ValidatePort("call_port", 65536).ok());
  EXPECT_TRUE(ValidateTtl("ttl_ms", kMinLeaseTtlMs).ok());
  EXPECT_TRUE(ValidateTtl("ttl_ms", kMaxLeaseTtlMs).ok());
  EXPECT_THAT(Message(ValidateTtl("ttl_ms", 5)), HasSubstr("ttl_ms: 5 ms is outside"));
  EXPECT_FALSE(ValidateTtl("ttl_ms", kMaxLeaseTtlMs + 1).ok());
}

dir::RegisterNodeRequest GoodNode() {
  dir::RegisterNodeRequest request;
  dir::Node* node = request.mutable_node();
  node->set_name("node-1");
  node->set_host("10.0.0.1");
  node->set_call_port(9501);
  node->set_fanout_port(9502);
  node->set_notify_port(9503);
  node->set_cast_port(9504);
  return request;
}

TEST(ValidationTest, RegisterNodeNamesTheBadField) {
  EXPECT_TRUE(Validate(GoodNode()).ok());
  dir::RegisterNodeRequest no_host = GoodNode();
  no_host.mutable_node()->clear_host();
  EXPECT_EQ(Message(Validate(no_host)), "node.host: must not be empty");
  dir::RegisterNodeRequest bad_port = GoodNode();
  bad_port.mutable_node()->set_cast_port(70000);
  EXPECT_THAT(Message(Validate(bad_port)), HasSubstr("node.cast_port"));
  dir::RegisterNodeRequest bad_lease = GoodNode();
  bad_lease.set_lease_id(-3);
  EXPECT_THAT(Message(Validate(bad_lease)), HasSubstr("lease_id"));
}

TEST(ValidationTest, RegistrationRules) {
  dir::Registration reg;
  reg.set_exchange("openstack");
  reg.set_topic("compute");
  reg.set_server("host@backend");
  reg.set_node("node-1");
  reg.set_kind(dir::KIND_RPC_SERVER);
  EXPECT_TRUE(ValidateRegistration("registration", reg).ok());

  dir::Registration no_kind = reg;
  no_kind.set_kind(dir::KIND_UNSPECIFIED);
  EXPECT_THAT(Message(ValidateRegistration("registration", no_kind)),
              HasSubstr("registration.kind"));

  dir::Registration rpc_pool = reg;
  rpc_pool.set_pool("p");
  EXPECT_THAT(Message(ValidateRegistration("registration", rpc_pool)),
              HasSubstr("registration.pool"));

  dir::Registration listener = reg;
  listener.set_kind(dir::KIND_NOTIFY_LISTENER);
  listener.set_server("");
  listener.set_pool("pool-a");
  EXPECT_TRUE(ValidateRegistration("registration", listener).ok());

  dir::Registration bad_topic = reg;
  bad_topic.set_topic("comp\tute");
  EXPECT_THAT(Message(ValidateRegistration("registration", bad_topic)),
              HasSubstr("registration.topic: control character"));
}

TEST(ValidationTest, ListTopicsPageSizeBounds) {
  dir::ListTopicsRequest request;
  request.set_page_size(kMaxPageSize + 1);
  EXPECT_THAT(Message(Validate(request)), HasSubstr("page_size"));
  request.set_page_size(-1);
  EXPECT_FALSE(Validate(request).ok());
  request.set_page_size(0);
  EXPECT_TRUE(Validate(request).ok());
}

TEST(ValidationTest, WatchRejectsNegativeRevision) {
  dir::WatchRequest request;
  request.set_start_revision(-1);
  EXPECT_THAT(Message(Validate(request)), HasSubstr("start_revision"));
}

}  // namespace
}  // namespace zmesh::service
