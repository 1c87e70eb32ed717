// Validation of what clients send to the directory. Every violation is INVALID_ARGUMENT with a
// message naming the field, e.g. `node.name: must not be empty`.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "zmesh/directory/v1/directory.pb.h"
#include "zmesh/directory/v1/lease.pb.h"

namespace zmesh::service {

inline constexpr size_t kMaxNameBytes = 255;
// Lease TTL bounds, in milliseconds.
inline constexpr int64_t kMinLeaseTtlMs = 100;
inline constexpr int64_t kMaxLeaseTtlMs = 24 * 60 * 60 * 1000;
inline constexpr int32_t kDefaultPageSize = 100;
inline constexpr int32_t kMaxPageSize = 1000;

// A name (node, exchange, topic, server, pool, host): non-empty (unless allow_empty), at most
// 255 bytes, no NUL or other control characters. Any other character is fine ("host@backend").
absl::Status ValidateName(absl::string_view field, absl::string_view value,
                          bool allow_empty = false);
absl::Status ValidatePort(absl::string_view field, uint32_t port);
absl::Status ValidateTtl(absl::string_view field, int64_t ttl_ms);
absl::Status ValidateLeaseId(absl::string_view field, int64_t id);

absl::Status Validate(const directory::v1::RegisterNodeRequest& request);
// For Register and Unregister (the registration's identity fields).
absl::Status ValidateRegistration(absl::string_view field,
                                  const directory::v1::Registration& registration);
absl::Status Validate(const directory::v1::LookupRequest& request);
absl::Status Validate(const directory::v1::ListTopicsRequest& request);
absl::Status Validate(const directory::v1::WatchRequest& request);

}  // namespace zmesh::service
