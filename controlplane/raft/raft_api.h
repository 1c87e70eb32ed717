// The one place that includes libraft (Debian libraft-dev 0.15, canonical's C Raft). Its
// headers lack extern "C". Only controlplane/raft/*.cc and the Raft tests include this file;
// everything else talks to Consensus.
#pragma once

extern "C" {
#include <raft.h>
#include <raft/uv.h>
}
