// Encoding and validation of the data-plane envelope ([Header][payload], see
// docs/wire-protocol.md). Shared by zmesh-proxy and libzmesh so both sides apply the same rules.
#pragma once

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "zmesh/wire/v1/envelope.pb.h"

namespace zmesh::wire {

// v1:: below is the generated ::zmesh::wire::v1, already a namespace of zmesh::wire.

inline constexpr int64_t kMaxHeaderBytes = 64 * 1024;
inline constexpr int64_t kDefaultMaxPayloadBytes = 16 * 1024 * 1024;
// Longest exchange/topic/server/pool name, as in the directory.
inline constexpr size_t kMaxNameBytes = 255;

// A decoded header, or why it could not be used. `status` is what a refusal would carry
// (STATUS_BAD_MESSAGE or STATUS_TOO_LARGE); `header_readable` says whether `header` holds enough
// (kind, message_id) to address a refusal to the sender.
struct Decoded {
  v1::Header header;
  v1::Status status = v1::STATUS_OK;
  std::string detail;  // why, when status != STATUS_OK
  bool header_readable = false;
  bool ok() const { return status == v1::STATUS_OK; }
};

// Parses and validates a received header frame and its payload size against the rules of
// docs/wire-protocol.md ("Validation on receipt"). Never fails on any input bytes.
Decoded DecodeHeader(absl::string_view header_bytes, int64_t payload_bytes,
                     int64_t max_payload_bytes);

// Serializes a header (version is set to VERSION_1).
std::string EncodeHeader(v1::Header header);

// Checks one name of a target: non-empty when required, at most kMaxNameBytes, no control
// character. INVALID_ARGUMENT "<field>: ..." otherwise.
[[nodiscard]] absl::Status ValidateName(absl::string_view field, absl::string_view value,
                                        bool required);

// Short name of a kind / status for logs and errors ("CALL", "NO_SUCH_TARGET").
absl::string_view KindName(v1::Kind kind);
absl::string_view StatusName(v1::Status status);

}  // namespace zmesh::wire
