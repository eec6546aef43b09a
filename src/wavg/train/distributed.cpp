// Data-parallel collectives on c10d: TCPStore rendezvous, ProcessGroupGloo, lost-rank reports.
#include "wavg/train/distributed.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "wavg/core/error.h"

namespace wavg::detail {

namespace {

using std::chrono::milliseconds;

// An environment variable as an integer in [lo, hi]; unset: fallback.
int env_int(const char* name, int fallback, int64_t lo, int64_t hi, const std::string& range) {
  const char* v = std::getenv(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  if (*v == '\0' || *end != '\0' || errno != 0 || x < lo || x > hi)
    throw Error(std::string("environment: ") + name + " must be an integer " + range + ", got '" +
                v + "'");
  return int(x);
}

// The local address this host uses to reach `host` (a connected UDP socket sends nothing): Gloo's
// pairs listen there, so that ranks on other hosts (or network namespaces) can reach them.
std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res)
    throw Error("environment: MASTER_ADDR '" + host + "' does not resolve to an IPv4 address");
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  std::string out;
  sockaddr_in local{};
  socklen_t len = sizeof local;
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    char buf[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, &local.sin_addr, buf, sizeof buf)) out = buf;
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(res);
  WAVG_CHECK(!out.empty(), "distributed: no route to MASTER_ADDR '", host, "'");
  return out;
}

std::string first_line(const std::string& s) {
  std::string l = s.substr(0, s.find('\n'));
  return l.size() > 300 ? l.substr(0, 300) + "..." : l;
}

}  // namespace

LaunchEnv launch_env_from_environment() {
  LaunchEnv e;
  e.present = std::getenv("WORLD_SIZE") != nullptr || std::getenv("RANK") != nullptr;
  if (!e.present) return e;
  WAVG_CHECK(std::getenv("WORLD_SIZE") != nullptr,
             "environment: RANK is set but WORLD_SIZE is not (torchrun convention: RANK, "
             "WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
  e.world = env_int("WORLD_SIZE", 1, 1, 1 << 16, "in [1, 65536]");
  const std::string below = "in [0, WORLD_SIZE=" + std::to_string(e.world) + ")";
  WAVG_CHECK(e.world == 1 || std::getenv("RANK") != nullptr, "environment: WORLD_SIZE is ",
             e.world, " but RANK is not set");
  e.rank = env_int("RANK", 0, 0, e.world - 1, below);
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, e.world - 1, below);
  e.local_world = env_int("LOCAL_WORLD_SIZE", e.world, 1, e.world,
                          "in [1, WORLD_SIZE=" + std::to_string(e.world) + "]");
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535, "in [1, 65535]");
  if (const char* a = std::getenv("MASTER_ADDR")) {
    WAVG_CHECK(*a != '\0', "environment: MASTER_ADDR must be a host name or address, got ''");
    e.master_addr = a;
  }
  return e;
}

std::pair<int64_t, int64_t> rank_rows(int64_t n, int rank, int world) {
  const int64_t first = n * rank / world, last = n * (rank + 1) / world;
  return {first, last - first};
}

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::string where;  // MASTER_ADDR:MASTER_PORT
};

Distributed::Distributed(const LaunchEnv& env, double timeout_s)
    : impl_(std::make_unique<Impl>()), rank_(env.rank), world_(env.world), timeout_s_(timeout_s) {
  const milliseconds timeout(int64_t(timeout_s * 1000));
  impl_->where = env.master_addr + ":" + std::to_string(env.master_port);
  const std::string tail = " (rank " + std::to_string(rank_) + " of " + std::to_string(world_) +
                           ", timeout " + std::to_string(int64_t(timeout_s)) + " s)";
#ifdef C10_USE_GLOG
  // c10d and Gloo log every failed bind, retry and closed peer to stderr; the one line that
  // matters is this class's wavg::Error, so their log stays quiet below FATAL.
  FLAGS_minloglevel = std::max(FLAGS_minloglevel, 3);
#endif
  c10d::TCPStoreOptions so;
  so.port = uint16_t(env.master_port);
  so.isServer = rank_ == 0;
  so.numWorkers = size_t(world_);
  so.waitWorkers = true;
  so.timeout = timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    std::string why = e.what();
    std::replace(why.begin(), why.end(), '\n', ' ');
    why = first_line(why);
    if (rank_ == 0 && why.find("ait") == std::string::npos)  // not a wait timeout: the server
      throw Error("distributed: cannot serve the rendezvous at " + impl_->where + tail + ": " + why);
    throw Error("distributed: rendezvous at " + impl_->where + " failed" + tail +
                (rank_ == 0 ? ": not every rank arrived: " : ": ") + why);
  }
  // Every rank must agree on WORLD_SIZE and hold a distinct RANK.
  if (rank_ == 0)
    impl_->store->set("wavg/world", std::vector<uint8_t>{uint8_t(world_ & 255), uint8_t(world_ >> 8)});
  const auto w = impl_->store->get("wavg/world");
  const int world0 = w.size() == 2 ? int(w[0]) | (int(w[1]) << 8) : -1;
  WAVG_CHECK(world0 == world_, "distributed: WORLD_SIZE is ", world_, " here but ", world0,
             " at rank 0 (", impl_->where, ")");
  WAVG_CHECK(impl_->store->add("wavg/rank/" + std::to_string(rank_), 1) == 1, "distributed: RANK ",
             rank_, " was launched twice (", impl_->where, ")");
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");  // torch's convention
    opts->devices.push_back(
        ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                          : c10d::ProcessGroupGloo::createDeviceForHostname(
                                local_address_towards(env.master_addr, env.master_port)));
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("wavg/gloo", impl_->store), rank_, world_, opts);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("rendezvous", e.what());
  }
}

Distributed::~Distributed() = default;

void Distributed::fail(const std::string& what, const std::string& why) {
  // Report this rank as alive, give the other survivors a moment to do the same, and name the rest.
  std::vector<int> lost;
  try {
    impl_->store->setTimeout(milliseconds(2000));
    impl_->store->set("wavg/alive/" + std::to_string(rank_), {1});
    std::this_thread::sleep_for(milliseconds(1500));
    for (int r = 0; r < world_; ++r)
      if (r != rank_ && !impl_->store->check({"wavg/alive/" + std::to_string(r)})) lost.push_back(r);
  } catch (const std::exception&) {
    lost = {0};  // the store (served by rank 0) is gone
  }
  // A group whose peers died may block in its destructor: leave it (and the store) to the exit.
  impl_->pg.release();
  impl_->store.release();
  std::string names;
  for (int r : lost) names += (names.empty() ? "" : ", ") + std::to_string(r);
  throw Error("distributed: " + what + " failed at rank " + std::to_string(rank_) + ": " +
              (lost.empty() ? std::string("no rank lost") :
               "lost rank " + names + " (no answer within the " +
                   std::to_string(int64_t(timeout_s_)) + " s timeout)") +
              ": " + first_line(why));
}

void Distributed::broadcast(const std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return;
  try {
    std::vector<at::Tensor> flat{torch::cat(
        [&] {
          std::vector<at::Tensor> v;
          for (const auto& t : tensors) v.push_back(t.detach().reshape(-1).to(torch::kDouble));
          return v;
        }())};
    impl_->pg->broadcast(flat)->wait();
    int64_t off = 0;
    torch::NoGradGuard no_grad;
    for (const auto& t : tensors) {
      const_cast<at::Tensor&>(t).copy_(flat[0].narrow(0, off, t.numel()).view(t.sizes()));
      off += t.numel();
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("broadcast", e.what());
  }
}

void Distributed::all_reduce(const std::vector<at::Tensor>& tensors, double scale,
                             int64_t bucket_elems) {
  struct Bucket {
    size_t first, last;
    std::vector<at::Tensor> flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  for (size_t i = 0; i < tensors.size();) {  // consecutive tensors of one dtype, bucket_elems each
    Bucket b{i, i, {}, {}};
    int64_t n = 0;
    while (b.last < tensors.size() && tensors[b.last].scalar_type() == tensors[i].scalar_type() &&
           (n == 0 || n + tensors[b.last].numel() <= bucket_elems))
      n += tensors[b.last++].numel();
    i = b.last;
    buckets.push_back(std::move(b));
  }
  torch::NoGradGuard no_grad;
  try {
    for (Bucket& b : buckets) {
      std::vector<at::Tensor> parts;
      for (size_t k = b.first; k < b.last; ++k) parts.push_back(tensors[k].reshape(-1));
      b.flat = {torch::cat(parts)};
      b.work = impl_->pg->allreduce(b.flat);  // in flight while the next bucket is packed
    }
    for (Bucket& b : buckets) {
      b.work->wait();
      if (scale != 1.0) b.flat[0].mul_(scale);
      int64_t off = 0;
      for (size_t k = b.first; k < b.last; ++k) {
        const at::Tensor& t = tensors[k];
        const_cast<at::Tensor&>(t).copy_(b.flat[0].narrow(0, off, t.numel()).view(t.sizes()));
        off += t.numel();
      }
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("all_reduce", e.what());
  }
}

void Distributed::all_reduce(std::vector<double>& values) {
  if (values.empty()) return;
  at::Tensor t = torch::from_blob(values.data(), {int64_t(values.size())}, torch::kDouble).clone();
  all_reduce({t});
  std::memcpy(values.data(), t.data_ptr(), values.size() * sizeof(double));
}

void Distributed::all_gather(void* whole, int64_t numel, size_t elem_bytes) {
  const int64_t most = (numel + world_ - 1) / world_ * int64_t(elem_bytes);
  auto* bytes = static_cast<unsigned char*>(whole);
  const auto [first, count] = rank_rows(numel, rank_, world_);
  try {
    std::vector<at::Tensor> in{torch::zeros({most}, torch::kUInt8)};
    std::memcpy(in[0].data_ptr(), bytes + first * int64_t(elem_bytes), size_t(count) * elem_bytes);
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world_; ++r) out[0].push_back(torch::empty({most}, torch::kUInt8));
    impl_->pg->allgather(out, in)->wait();
    for (int r = 0; r < world_; ++r) {
      const auto [f, c] = rank_rows(numel, r, world_);
      std::memcpy(bytes + f * int64_t(elem_bytes), out[0][size_t(r)].data_ptr(),
                  size_t(c) * elem_bytes);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("all_gather", e.what());
  }
}

std::vector<float> Distributed::all_gather_concat(const std::vector<float>& mine) {
  std::vector<double> lengths(size_t(world_), 0.0);  // each rank fills its own slot
  lengths[size_t(rank_)] = double(mine.size());
  all_reduce(lengths);
  const int64_t most = int64_t(*std::max_element(lengths.begin(), lengths.end()));
  std::vector<float> out;
  try {
    // Gloo gathers equal lengths: every rank's vector padded to the longest.
    std::vector<at::Tensor> in{torch::zeros({std::max<int64_t>(most, 1)}, torch::kFloat)};
    std::copy(mine.begin(), mine.end(), in[0].data_ptr<float>());
    std::vector<std::vector<at::Tensor>> gathered(1);
    for (int r = 0; r < world_; ++r) gathered[0].push_back(torch::empty_like(in[0]));
    impl_->pg->allgather(gathered, in)->wait();
    for (int r = 0; r < world_; ++r) {
      const float* p = gathered[0][size_t(r)].data_ptr<float>();
      out.insert(out.end(), p, p + int64_t(lengths[size_t(r)]));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("all_gather", e.what());
  }
  return out;
}

void Distributed::barrier() {
  try {
    impl_->pg->barrier()->wait();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("barrier", e.what());
  }
}

double average_gradients(Distributed& dist, const std::vector<at::Tensor>& params,
                         const at::Tensor& loss) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  torch::Tensor l = loss.detach().to(torch::kFloat).reshape({1}).clone();
  grads.push_back(l);
  dist.all_reduce(grads, 1.0 / dist.world());
  return l.item<double>();
}

void broadcast_buffers(Distributed& dist, const std::vector<at::Tensor>& buffers) {
  std::vector<torch::Tensor> floating;
  for (const auto& b : buffers)
    if (b.is_floating_point()) floating.push_back(b);
  if (!floating.empty()) dist.broadcast(floating);
}

}  // namespace wavg::detail
