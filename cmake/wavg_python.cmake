# The Python package's build (WAVG_BUILD_PYTHON, run by `pip install .` through scikit-build-core):
# finds the interpreter and its torch, and points find_package(Torch) at that torch's own LibTorch,
# so the extension never links one LibTorch into an interpreter whose torch is another.
#
#   Debian's python3-torch: torch.utils.cmake_prefix_path names a folder that does not exist, and
#     its LibTorch is Debian's libtorch-dev (/usr/lib/x86_64-linux-gnu/cmake/Torch), which the
#     default search finds, as the C++ build does.
#   A PyPI torch (2.x): <torch>/share/cmake/Torch exists; the torch root itself goes first on
#     CMAKE_PREFIX_PATH, before its CMake folder, because TorchConfig.cmake finds libtorch.so and
#     libc10.so with find_library (as scripts/build_libtorch2.sh does).
#
# Sets WAVG_PY_TORCH_ROOT, WAVG_PY_TORCH_VERSION and WAVG_PY_TORCH_CXX11_ABI (0 or 1) for
# python/CMakeLists.txt.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module)
# pybind11 3.x (a PyPI torch 2.x's) takes FindPython's Python_* when Python_FOUND is set (torch 2.x's
# CUDA config finds its interpreter), and then needs python_add_library, which FindPython defines only
# with a Development component: found here, the same interpreter.
find_package(Python ${Python3_VERSION} EXACT REQUIRED COMPONENTS Interpreter Development.Module)
execute_process(
  COMMAND ${Python3_EXECUTABLE} -c
    "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"
  OUTPUT_VARIABLE _wavg_py_torch RESULT_VARIABLE _wavg_py_rc ERROR_VARIABLE _wavg_py_err
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT _wavg_py_rc EQUAL 0)
  message(FATAL_ERROR "wavg: ${Python3_EXECUTABLE} cannot import torch (install torch first; pip "
                      "install . --no-build-isolation builds against the installed one): ${_wavg_py_err}")
endif()
string(REPLACE "\n" ";" _wavg_py_torch "${_wavg_py_torch}")
list(GET _wavg_py_torch 0 WAVG_PY_TORCH_ROOT)
list(GET _wavg_py_torch 1 WAVG_PY_TORCH_VERSION)
list(GET _wavg_py_torch 2 WAVG_PY_TORCH_CXX11_ABI)
if(EXISTS "${WAVG_PY_TORCH_ROOT}/share/cmake/Torch/TorchConfig.cmake")
  list(PREPEND CMAKE_PREFIX_PATH "${WAVG_PY_TORCH_ROOT}" "${WAVG_PY_TORCH_ROOT}/share/cmake")
  set(Torch_DIR "${WAVG_PY_TORCH_ROOT}/share/cmake/Torch" CACHE PATH "LibTorch of the Python torch" FORCE)
endif()
message(STATUS "wavg: Python ${Python3_VERSION} (${Python3_EXECUTABLE}), torch ${WAVG_PY_TORCH_VERSION} "
               "at ${WAVG_PY_TORCH_ROOT}, C++11 ABI ${WAVG_PY_TORCH_CXX11_ABI}")
# The libraries are linked into the extension, a shared object, and share std::string with torch.
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
add_compile_definitions(_GLIBCXX_USE_CXX11_ABI=${WAVG_PY_TORCH_CXX11_ABI})
