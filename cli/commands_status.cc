// zmeshctl status: the health of the whole system in one command. One row per directory replica
// with its Raft progress and its lag behind the leader (asked of each replica directly: Status
// is never forwarded), then the nodes and leases as the leader sees them, with the ones that
// need attention, and a one-line verdict: healthy, degraded or unavailable.
//
// The API does not say when a lease was last renewed. It says how long the lease has left
// (Lease.remaining_ms, timed by the leader) and the TTL it was granted with; a renewal resets
// the remaining time to the full TTL, so TTL - remaining is the time since the last renewal
// (or since the current leader took over, which gives every lease a fresh TTL).
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "zmesh/directory/v1/directory.pb.h"
#include "zmesh/directory/v1/lease.pb.h"

namespace zmesh::cli {

namespace dv1 = ::zmesh::directory::v1;

namespace {

// Reads of nodes and leases at different revisions are retried this many times, so that a
// node and its lease are judged from one state of the directory.
constexpr int kConsistentReadAttempts = 5;
// At most this many reasons on the Health line (all of them are in the JSON).
constexpr size_t kMaxReasonsShown = 3;

std::string Bytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < 1024 * 1024) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  return absl::StrFormat("%.1f MiB", bytes / (1024.0 * 1024.0));
}

// Converts a message to a generic JSON value (same field names and encodings as ToJson).
google::protobuf::Value ToValue(const google::protobuf::Message& message) {
  google::protobuf::Value value;
  auto status = google::protobuf::util::JsonStringToMessage(ToJson(message, false),
                                                            value.mutable_struct_value());
  if (!status.ok()) value.set_string_value("unprintable");
  return value;
}

std::string ErrorText(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

// Endpoint of a member whose gRPC address is not known.
constexpr char kNoAddress[] = "-";

struct EndpointStatus {
  std::string address;
  // Id of the member at this address per ListMembers; 0 when unknown.
  uint64_t member_id = 0;
  bool asked = false;
  absl::StatusOr<dv1::StatusResponse> status = absl::UnknownError("not asked");
};

// A client that talks to this one replica only (no failover to another).
absl::StatusOr<std::unique_ptr<client::DirectoryClient>> OneReplicaClient(
    const Context& ctx, const std::string& address) {
  client::DirectoryClientOptions options;
  options.addresses = {address};
  options.request_timeout_ms = ctx.timeout_ms;
  return client::DirectoryClient::Create(options);
}

// Asks each endpoint with an address that was not asked yet for its own Status, all at once,
// each with its own single-address client so that no answer comes from another replica.
void QueryAll(const Context& ctx, std::vector<EndpointStatus>& endpoints) {
  std::vector<std::thread> threads;
  for (EndpointStatus& endpoint : endpoints) {
    if (endpoint.address == kNoAddress || endpoint.asked) continue;
    endpoint.asked = true;
    threads.emplace_back([&ctx, &endpoint] {
      absl::StatusOr<std::unique_ptr<client::DirectoryClient>> one =
          OneReplicaClient(ctx, endpoint.address);
      endpoint.status = one.ok() ? (*one)->Status({}) : one.status();
    });
  }
  for (std::thread& thread : threads) thread.join();
}

// The endpoints to ask: the given addresses; with a single one, also every member's gRPC
// address as that replica knows them.
std::vector<EndpointStatus> Endpoints(const Context& ctx,
                                      const absl::StatusOr<dv1::ListMembersResponse>& members) {
  std::vector<EndpointStatus> endpoints;
  std::map<std::string, uint64_t> ids;
  if (members.ok()) {
    for (const dv1::Member& member : members->members()) ids[member.grpc_address()] = member.id();
  }
  auto add = [&](const std::string& address) {
    for (const EndpointStatus& endpoint : endpoints) {
      if (endpoint.address == address) return;
    }
    auto it = ids.find(address);
    endpoints.push_back({address, it != ids.end() ? it->second : 0});
  };
  for (const std::string& address : ctx.addresses) add(address);
  if (ctx.addresses.size() == 1 && members.ok()) {
    for (const dv1::Member& member : members->members()) {
      if (member.grpc_address().empty()) {
        EndpointStatus unknown{kNoAddress, member.id()};
        unknown.status = absl::NotFoundError("no gRPC address known for this member");
        endpoints.push_back(std::move(unknown));
      } else {
        add(member.grpc_address());
      }
    }
  }
  return endpoints;
}

// "replica 3 (127.0.0.1:9500)", "replica 127.0.0.1:9500" when its id is unknown.
std::string ReplicaName(const EndpointStatus& endpoint) {
  uint64_t id = endpoint.status.ok() ? endpoint.status->id() : endpoint.member_id;
  if (id == 0) return absl::StrCat("replica ", OneLine(endpoint.address));
  if (endpoint.address == kNoAddress) return absl::StrCat("replica ", id);
  return absl::StrCat("replica ", id, " (", OneLine(endpoint.address), ")");
}

// What needs attention about one node or one lease (a lease bound to no node has node "").
struct Attention {
  enum class Problem { kLeaseLate, kLeaseMissing, kDraining };
  Problem problem;
  std::string node;
  int64_t lease_id = 0;
  int64_t ttl_ms = 0;
  int64_t remaining_ms = -1;
};

std::string ProblemName(Attention::Problem problem) {
  switch (problem) {
    case Attention::Problem::kLeaseLate:
      return "lease_late";
    case Attention::Problem::kLeaseMissing:
      return "lease_missing";
    case Attention::Problem::kDraining:
      return "draining";
  }
  return "unknown";
}

// Nodes and leases as the leader sees them.
struct SystemView {
  // OK when read; then the fields below are set.
  absl::Status read = absl::UnknownError("not read");
  std::string address;  // of the replica they were read from
  dv1::ListNodesResponse nodes;
  dv1::ListLeasesResponse leases;
  // The two reads saw the same revision (one state of the directory).
  bool consistent = false;
};

// Reads nodes and leases from one replica (linearizable), again while their revisions differ.
SystemView ReadSystem(const Context& ctx, const std::string& address) {
  SystemView view;
  view.address = address;
  absl::StatusOr<std::unique_ptr<client::DirectoryClient>> one = OneReplicaClient(ctx, address);
  if (!one.ok()) {
    view.read = one.status();
    return view;
  }
  for (int attempt = 0; attempt < kConsistentReadAttempts && !view.consistent; ++attempt) {
    absl::StatusOr<dv1::ListNodesResponse> nodes = (*one)->ListNodes({});
    if (!nodes.ok()) {
      view.read = WithContext(nodes.status(), "listing the nodes");
      return view;
    }
    absl::StatusOr<dv1::ListLeasesResponse> leases = (*one)->ListLeases({});
    if (!leases.ok()) {
      view.read = WithContext(leases.status(), "listing the leases");
      return view;
    }
    view.nodes = *std::move(nodes);
    view.leases = *std::move(leases);
    view.consistent = view.nodes.revision() == view.leases.revision();
  }
  view.read = absl::OkStatus();
  return view;
}

struct Health {
  enum class Verdict { kHealthy, kDegraded, kUnavailable };
  Verdict verdict = Verdict::kHealthy;
  // Why the verdict is not healthy, most important first.
  std::vector<std::string> reasons;
  // Worth knowing, not a problem (a draining node, a permanent node).
  std::vector<std::string> notes;

  void Degrade(std::string reason) {
    if (verdict == Verdict::kHealthy) verdict = Verdict::kDegraded;
    reasons.push_back(std::move(reason));
  }
  void MakeUnavailable(std::string reason) {
    verdict = Verdict::kUnavailable;
    reasons.insert(reasons.begin(), std::move(reason));
  }
};

std::string VerdictName(Health::Verdict verdict) {
  switch (verdict) {
    case Health::Verdict::kHealthy:
      return "healthy";
    case Health::Verdict::kDegraded:
      return "degraded";
    case Health::Verdict::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

// Counts of the nodes and leases and what needs attention, from one view.
struct SystemSummary {
  int64_t nodes = 0;
  int64_t draining = 0;
  int64_t permanent = 0;
  int64_t leases = 0;
  int64_t late_leases = 0;
  int64_t unbound_leases = 0;  // bound to no node
  int64_t untimed_leases = 0;  // remaining time unknown to the replica asked
  std::vector<Attention> attention;
};

std::string NodeNames(const dv1::Lease& lease) {
  std::vector<std::string> names;
  for (const std::string& node : lease.nodes()) names.push_back(OneLine(node));
  return absl::StrJoin(names, ", ");
}

// Judges the nodes and leases: a lease is late when less than late_percent of its TTL is left,
// i.e. it was not renewed for more than (100 - late_percent)% of its TTL. Proxies renew every
// TTL/3, so a kept lease never has less than about 2/3 of its TTL left.
SystemSummary Summarize(const SystemView& view, int64_t late_percent, Health& health) {
  SystemSummary summary;
  std::map<int64_t, const dv1::Lease*> leases;
  for (const dv1::Lease& lease : view.leases.leases()) leases[lease.id()] = &lease;
  summary.leases = view.leases.leases_size();
  std::set<int64_t> late;
  for (const dv1::Lease& lease : view.leases.leases()) {
    if (lease.nodes().empty()) ++summary.unbound_leases;
    if (lease.remaining_ms() < 0) {
      ++summary.untimed_leases;
      continue;
    }
    if (lease.remaining_ms() * 100 >= lease.ttl_ms() * late_percent) continue;
    late.insert(lease.id());
    ++summary.late_leases;
    const int64_t silent_ms = lease.ttl_ms() - lease.remaining_ms();
    std::string owner =
        lease.nodes().empty()
            ? "bound to no node"
            : absl::StrCat("node", lease.nodes_size() == 1 ? " " : "s ", NodeNames(lease));
    health.Degrade(absl::StrCat("lease ", lease.id(), " (", owner, ") not renewed for ", silent_ms,
                                " ms (", lease.remaining_ms(), " of ", lease.ttl_ms(),
                                " ms left)"));
    if (lease.nodes().empty()) {
      summary.attention.push_back(
          {Attention::Problem::kLeaseLate, "", lease.id(), lease.ttl_ms(), lease.remaining_ms()});
    }
  }
  if (summary.untimed_leases > 0) {
    health.notes.push_back(absl::StrCat(summary.untimed_leases,
                                        " lease(s) with unknown remaining time (",
                                        OneLine(view.address), " is not timing leases)"));
  }
  for (const dv1::Node& node : view.nodes.nodes()) {
    ++summary.nodes;
    if (node.draining()) {
      ++summary.draining;
      health.notes.push_back(absl::StrCat("node ", OneLine(node.name()), " is draining"));
    }
    if (node.lease_id() == 0) ++summary.permanent;
    auto lease = leases.find(node.lease_id());
    Attention entry{Attention::Problem::kDraining, node.name(), node.lease_id()};
    if (lease != leases.end()) {
      entry.ttl_ms = lease->second->ttl_ms();
      entry.remaining_ms = lease->second->remaining_ms();
    }
    if (node.lease_id() != 0 && lease == leases.end() && view.consistent) {
      entry.problem = Attention::Problem::kLeaseMissing;
      health.Degrade(absl::StrCat("node ", OneLine(node.name()), " is bound to lease ",
                                  node.lease_id(), ", which does not exist"));
    } else if (late.count(node.lease_id()) > 0) {
      entry.problem = Attention::Problem::kLeaseLate;
    } else if (!node.draining()) {
      continue;
    }
    summary.attention.push_back(std::move(entry));
  }
  if (summary.permanent > 0) {
    health.notes.push_back(
        absl::StrCat(summary.permanent, " permanent node(s) (registered by hand, no lease)"));
  }
  return summary;
}

std::string AttentionText(const Attention& entry) {
  switch (entry.problem) {
    case Attention::Problem::kLeaseLate:
      return absl::StrCat("lease not renewed for ", entry.ttl_ms - entry.remaining_ms, " ms",
                          entry.node.empty() ? " (bound to no node)" : "");
    case Attention::Problem::kLeaseMissing:
      return "bound to a lease that does not exist";
    case Attention::Problem::kDraining:
      return "draining: no new topic-only traffic";
  }
  return "";
}

absl::Status ShowStatus(Context& ctx) {
  const int64_t max_lag = ctx.args.GetInt("max-lag");
  const int64_t late_percent = ctx.args.GetInt("late-percent");
  // With one address the members tell where the others are; otherwise they only label the
  // replicas that do not answer. A replica that does not know them (or is down) gives none.
  absl::StatusOr<dv1::ListMembersResponse> members = ctx.client.ListMembers({});
  std::vector<EndpointStatus> endpoints = Endpoints(ctx, members);
  QueryAll(ctx, endpoints);
  // A leader that was not asked (not among the addresses given) is asked too: the nodes and
  // leases are read from it.
  for (size_t i = 0, n = endpoints.size(); i < n; ++i) {
    if (!endpoints[i].status.ok()) continue;
    const std::string leader_address = endpoints[i].status->leader_grpc_address();
    if (leader_address.empty()) continue;
    bool known = false;
    for (const EndpointStatus& endpoint : endpoints)
      known = known || endpoint.address == leader_address;
    if (!known) endpoints.push_back({leader_address, endpoints[i].status->leader_id()});
  }
  QueryAll(ctx, endpoints);
  // The same replica reached under two spellings of its address is shown once.
  std::vector<EndpointStatus> unique;
  for (EndpointStatus& endpoint : endpoints) {
    bool seen = false;
    for (const EndpointStatus& other : unique) {
      seen = seen || (endpoint.status.ok() && other.status.ok() &&
                      endpoint.status->id() == other.status->id());
    }
    if (!seen) unique.push_back(std::move(endpoint));
  }
  endpoints = std::move(unique);

  // Answering replicas by id, then the others in the order asked.
  std::stable_sort(endpoints.begin(), endpoints.end(),
                   [](const EndpointStatus& a, const EndpointStatus& b) {
                     if (a.status.ok() != b.status.ok()) return a.status.ok();
                     return a.status.ok() && a.status->id() < b.status->id();
                   });
  const EndpointStatus* leader_endpoint = nullptr;
  for (const EndpointStatus& endpoint : endpoints) {
    if (endpoint.status.ok() && endpoint.status->role() == dv1::ROLE_LEADER &&
        (leader_endpoint == nullptr || endpoint.status->term() > leader_endpoint->status->term())) {
      leader_endpoint = &endpoint;
    }
  }
  const dv1::StatusResponse* leader =
      leader_endpoint != nullptr ? &*leader_endpoint->status : nullptr;
  // How far a replica's applied state is behind what the leader has committed.
  auto lag = [&](const dv1::StatusResponse& s) -> std::optional<uint64_t> {
    if (leader == nullptr) return std::nullopt;
    return leader->commit_index() > s.applied_index() ? leader->commit_index() - s.applied_index()
                                                      : 0;
  };

  // The replicas.
  Health health;
  int answered = 0;
  for (const EndpointStatus& endpoint : endpoints) {
    if (!endpoint.status.ok()) {
      // The full error is on its UNREACHABLE line.
      health.Degrade(absl::StrCat(ReplicaName(endpoint), " did not answer (",
                                  absl::StatusCodeToString(endpoint.status.status().code()), ")"));
      continue;
    }
    ++answered;
    const dv1::StatusResponse& s = *endpoint.status;
    if (s.role() != dv1::ROLE_LEADER && s.role() != dv1::ROLE_FOLLOWER) {
      health.Degrade(absl::StrCat(ReplicaName(endpoint), " is ", RoleName(s.role())));
    }
    // The state machine is deterministic: at the same applied index every replica holds the
    // same state, so a different revision there means this replica's state is not the
    // leader's (e.g. it joined a cluster restored from a backup with an empty data dir).
    if (leader != nullptr && s.id() != leader->id() &&
        s.applied_index() == leader->applied_index() && s.revision() != leader->revision()) {
      health.Degrade(absl::StrCat(ReplicaName(endpoint), " has revision ", s.revision(),
                                  " at applied index ", s.applied_index(), " where the leader has ",
                                  leader->revision(), ": its state differs from the leader's"));
    }
    if (std::optional<uint64_t> behind = lag(s);
        behind.has_value() && *behind > static_cast<uint64_t>(max_lag)) {
      health.Degrade(absl::StrCat(ReplicaName(endpoint), " is ", *behind,
                                  " entries behind the leader (more than --max-lag ", max_lag,
                                  ")"));
    }
  }
  // Replicas on different versions are expected during a rolling upgrade, worth a note only.
  std::set<std::string> versions;
  for (const EndpointStatus& endpoint : endpoints) {
    if (endpoint.status.ok()) versions.insert(OneLine(endpoint.status->version()));
  }
  if (versions.size() > 1) {
    health.notes.push_back(
        absl::StrCat("replicas run different versions: ", absl::StrJoin(versions, ", ")));
  }
  if (members.ok()) {
    int voters = 0;
    int voters_answering = 0;
    for (const dv1::Member& member : members->members()) {
      if (!member.voter()) {
        health.Degrade(absl::StrCat("member ", member.id(), " is not a voter yet (catching up)"));
        continue;
      }
      ++voters;
      for (const EndpointStatus& endpoint : endpoints) {
        if (endpoint.status.ok() && endpoint.status->id() == member.id()) ++voters_answering;
      }
    }
    const int quorum = voters / 2 + 1;
    if (voters > 0 && voters_answering < quorum) {
      health.MakeUnavailable(absl::StrCat("only ", voters_answering, " of ", voters,
                                          " voters answered (a quorum is ", quorum, ")"));
    }
  }
  if (leader == nullptr) {
    health.MakeUnavailable(answered == 0 ? "no replica answered"
                                         : "no leader among the replicas that answered");
  }

  // The nodes and leases, from the leader (which times the leases).
  SystemView view;
  std::optional<SystemSummary> summary;
  if (leader_endpoint != nullptr) {
    view = ReadSystem(ctx, leader_endpoint->address);
    if (view.read.ok()) {
      summary = Summarize(view, late_percent, health);
    } else {
      health.MakeUnavailable(absl::StrCat("cannot read the nodes and leases from the leader: ",
                                          OneLine(ErrorText(view.read))));
    }
  }

  if (ctx.format == OutputFormat::kJson) {
    google::protobuf::Struct root;
    auto set = [](google::protobuf::Struct& object, const std::string& key) {
      return &(*object.mutable_fields())[key];
    };
    if (leader != nullptr) set(root, "leader_id")->set_string_value(absl::StrCat(leader->id()));
    google::protobuf::ListValue* list = set(root, "endpoints")->mutable_list_value();
    for (const EndpointStatus& endpoint : endpoints) {
      google::protobuf::Struct* entry = list->add_values()->mutable_struct_value();
      set(*entry, "endpoint")->set_string_value(endpoint.address);
      if (endpoint.status.ok()) {
        *set(*entry, "status") = ToValue(*endpoint.status);
        if (std::optional<uint64_t> behind = lag(*endpoint.status); behind.has_value()) {
          set(*entry, "lag")->set_string_value(absl::StrCat(*behind));
        }
      } else {
        if (endpoint.member_id != 0) {
          set(*entry, "id")->set_string_value(absl::StrCat(endpoint.member_id));
        }
        set(*entry, "error")->set_string_value(ErrorText(endpoint.status.status()));
      }
    }
    if (members.ok()) {
      google::protobuf::Value value = ToValue(*members);
      auto it = value.struct_value().fields().find("members");
      if (it != value.struct_value().fields().end()) *set(root, "members") = it->second;
    }
    if (leader_endpoint != nullptr) {
      google::protobuf::Struct* system = set(root, "summary")->mutable_struct_value();
      set(*system, "read_from")->set_string_value(view.address);
      if (!summary.has_value()) {
        set(*system, "error")->set_string_value(ErrorText(view.read));
      } else {
        auto count = [&](const std::string& key, int64_t value) {
          set(*system, key)->set_string_value(absl::StrCat(value));
        };
        count("revision", view.nodes.revision());
        count("nodes", summary->nodes);
        count("draining_nodes", summary->draining);
        count("permanent_nodes", summary->permanent);
        count("leases", summary->leases);
        count("late_leases", summary->late_leases);
        count("unbound_leases", summary->unbound_leases);
        count("untimed_leases", summary->untimed_leases);
        count("late_percent", late_percent);
        google::protobuf::ListValue* attention = set(root, "attention")->mutable_list_value();
        for (const Attention& a : summary->attention) {
          google::protobuf::Struct* entry = attention->add_values()->mutable_struct_value();
          set(*entry, "problem")->set_string_value(ProblemName(a.problem));
          if (!a.node.empty()) set(*entry, "node")->set_string_value(a.node);
          set(*entry, "lease_id")->set_string_value(absl::StrCat(a.lease_id));
          if (a.lease_id != 0 && a.problem != Attention::Problem::kLeaseMissing) {
            set(*entry, "ttl_ms")->set_string_value(absl::StrCat(a.ttl_ms));
            set(*entry, "remaining_ms")->set_string_value(absl::StrCat(a.remaining_ms));
          }
        }
      }
    }
    google::protobuf::Struct* verdict = set(root, "health")->mutable_struct_value();
    set(*verdict, "verdict")->set_string_value(VerdictName(health.verdict));
    google::protobuf::ListValue* reasons = set(*verdict, "reasons")->mutable_list_value();
    for (const std::string& reason : health.reasons)
      reasons->add_values()->set_string_value(reason);
    google::protobuf::ListValue* notes = set(*verdict, "notes")->mutable_list_value();
    for (const std::string& note : health.notes) notes->add_values()->set_string_value(note);
    ctx.out << ToJson(root) << "\n";
  } else {
    Table table({"ID", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG", "REVISION",
                 "VERSION"});
    std::vector<std::string> errors;
    for (const EndpointStatus& endpoint : endpoints) {
      if (!endpoint.status.ok()) {
        table.AddRow({endpoint.member_id != 0 ? absl::StrCat(endpoint.member_id) : "-",
                      OneLine(endpoint.address), "UNREACHABLE", "-", "-", "-", "-", "-", "-", "-"});
        errors.push_back(absl::StrCat(OneLine(endpoint.address), ": ",
                                      OneLine(ErrorText(endpoint.status.status()))));
        continue;
      }
      const dv1::StatusResponse& s = *endpoint.status;
      std::optional<uint64_t> behind = lag(s);
      table.AddRow({absl::StrCat(s.id()), OneLine(endpoint.address), RoleName(s.role()),
                    absl::StrCat(s.term()),
                    s.leader_id() == 0 ? "none" : absl::StrCat(s.leader_id()),
                    absl::StrCat(s.commit_index()), absl::StrCat(s.applied_index()),
                    behind.has_value() ? absl::StrCat(*behind) : "-", absl::StrCat(s.revision()),
                    OrDash(s.version())});
    }
    ctx.out << table.Render();
    for (const std::string& error : errors) ctx.out << "UNREACHABLE " << error << "\n";
    if (leader != nullptr) {
      ctx.out << "\nLeader " << leader->id() << " (term " << leader->term() << "): revision "
              << leader->revision() << " (compacted up to " << leader->compact_revision() << "), "
              << leader->nodes() << " nodes, " << leader->registrations() << " registrations, "
              << leader->leases() << " leases, " << leader->watchers() << " watchers, database "
              << Bytes(leader->db_size_bytes()) << ", version " << OrDash(leader->version())
              << "\n";
    } else {
      ctx.out << "\nNo leader among the replicas that answered.\n";
    }
    if (summary.has_value()) {
      ctx.out << "Nodes: " << summary->nodes << " (" << summary->draining << " draining, "
              << summary->permanent << " permanent); leases: " << summary->leases << " ("
              << summary->late_leases << " not renewed in time, " << summary->unbound_leases
              << " bound to no node); revision " << view.nodes.revision() << "\n";
      if (!summary->attention.empty()) {
        Table attention({"NODE", "LEASE", "TTL-MS", "REMAINING-MS", "PROBLEM"});
        for (const Attention& a : summary->attention) {
          const bool timed = a.lease_id != 0 && a.problem != Attention::Problem::kLeaseMissing;
          attention.AddRow({OrDash(a.node), LeaseName(a.lease_id),
                            timed ? absl::StrCat(a.ttl_ms) : "-",
                            timed && a.remaining_ms >= 0 ? absl::StrCat(a.remaining_ms) : "-",
                            AttentionText(a)});
        }
        ctx.out << "\n" << attention.Render();
      }
    }
    if (!health.notes.empty()) ctx.out << "\n";
    for (const std::string& note : health.notes) ctx.out << "Note: " << note << "\n";
    std::string verdict = absl::StrCat("\nHealth: ", VerdictName(health.verdict));
    if (!health.reasons.empty()) {
      std::vector<std::string> shown(
          health.reasons.begin(),
          health.reasons.begin() + std::min(health.reasons.size(), kMaxReasonsShown));
      absl::StrAppend(&verdict, ": ", absl::StrJoin(shown, "; "));
      if (health.reasons.size() > shown.size()) {
        absl::StrAppend(&verdict, "; and ", health.reasons.size() - shown.size(), " more");
      }
    }
    ctx.out << verdict << "\n";
  }
  switch (health.verdict) {
    case Health::Verdict::kHealthy:
      return absl::OkStatus();
    case Health::Verdict::kDegraded:
      return absl::FailedPreconditionError(
          absl::StrCat("degraded: ", health.reasons.front(),
                       health.reasons.size() > 1 ? " (and more, see above)" : ""));
    case Health::Verdict::kUnavailable:
      return absl::UnavailableError(absl::StrCat("unavailable: ", health.reasons.front()));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> StatusCommands() {
  std::vector<Command> commands;
  commands.push_back(
      {{{"status"},
        "Show the health of the system: replicas and their lag, nodes, leases not renewed",
        "Asks every address given with --directory for its own status; with a single address,\n"
        "also every member that replica knows of. LAG is the leader's commit index minus the\n"
        "replica's applied index. Replicas that do not answer are listed as UNREACHABLE.\n"
        "Then reads the nodes and leases from the leader (which times the leases) and lists\n"
        "those that need attention: a node whose lease was not renewed in time (less than\n"
        "--late-percent of its TTL left: its proxy is stopped, hung or cut off; proxies renew\n"
        "every third of the TTL), a lease bound to no node that is not renewed either, a node\n"
        "bound to a lease that does not exist, a draining node.\n"
        "The last line is the verdict, with its reasons:\n"
        "  healthy      every member answers and is a voter, none lags more than --max-lag,\n"
        "               every lease is renewed in time (draining and permanent nodes are\n"
        "               noted, they do not count against health); exit code 0\n"
        "  degraded     a replica does not answer, is not a leader or follower, is not a voter\n"
        "               yet, lags, or holds another state than the leader at the same applied\n"
        "               index; or a lease is late or missing; exit code 1\n"
        "  unavailable  no leader, fewer than a quorum of voters answer, or the leader cannot\n"
        "               serve a read; exit code 1\n"
        "JSON output has every status field, the summary, the nodes and leases needing\n"
        "attention and the verdict (\"health\": {\"verdict\", \"reasons\", \"notes\"}).\n"
        "More in docs/operations.md, \"Health\".",
        {},
        {IntFlag("max-lag", "ENTRIES",
                 "A replica further behind the leader than this many log entries is lagging", 0,
                 std::numeric_limits<int64_t>::max(), "1000"),
         IntFlag("late-percent", "PERCENT",
                 "A lease with less than this percentage of its TTL left is not renewed in time", 1,
                 99, "50")}},
       ShowStatus});
  return commands;
}

}  // namespace zmesh::cli
