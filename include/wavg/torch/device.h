// Where training runs (DESIGN.md §8): the `device` setting ("cpu", "cuda", "cuda:N"), its check, and
// the LibTorch device it stands for in this process. With several ranks on one machine, "cuda"
// means cuda:LOCAL_RANK (the torchrun convention), so one setting serves every rank.
//
//   torch::Device d = wavg::resolve_device("cuda");   // cuda:0, or cuda:$LOCAL_RANK
//   model->to(d);
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace torch::nn {
class Module;
}

namespace wavg {

// Throws wavg::Error unless `spec` is "cpu", "cuda" or "cuda:N" (N a decimal index < 1024): the
// syntax only, so that configurations naming a GPU can be read and compared on any machine.
void check_device_spec(const std::string& spec);

// The device `spec` stands for here: "cuda" is cuda:LOCAL_RANK when that variable is set, else
// cuda:0. Throws wavg::Error naming the value and the reason when this wavg was built against a
// LibTorch without CUDA, when no CUDA device is visible, or when the index is past the last device.
c10::Device resolve_device(const std::string& spec);

// Whether this wavg was compiled against a LibTorch with CUDA (WAVG_WITH_CUDA).
bool built_with_cuda();

// The device of a module's first parameter (then buffer); CPU for a module with neither.
c10::Device module_device(const torch::nn::Module& module);

}  // namespace wavg
