// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @notice secp256k1 signature recovery that rejects malleable and malformed signatures.
library Signatures {
    /// @notice The signature is not 65 bytes, has a high s or a bad v, or recovers no address.
    error MalformedSignature();

    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @notice The address that signed `digest` with the 65-byte signature r || s || v.
    function recover(bytes32 digest, bytes calldata signature) internal pure returns (address signer) {
        if (signature.length != 65) revert MalformedSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert MalformedSignature();
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert MalformedSignature();
    }
}
