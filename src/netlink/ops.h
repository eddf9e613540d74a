// Placeholder: filled by its owner (see CMakeLists.txt).
#pragma once
