// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title ModelRegistry
/// @notice Model provenance: a model is its weight hash (the GGUF file's sha256), with a name, a
/// metadata URI, an SPDX license, its publisher, and its lineage (parents and how it derives from
/// them). Parents must be registered first, so lineage is always a DAG.
contract ModelRegistry {
    /// @notice How a model derives from a parent.
    enum Relation {
        Finetune,
        Quantize,
        Distill,
        Merge,
        Adapter,
        Convert
    }

    /// @notice One parent of a model.
    struct Parent {
        bytes32 modelHash;
        Relation relation;
    }

    /// @notice A registry entry.
    struct Model {
        string name;
        string metadataUri;
        string license;
        address publisher;
        uint64 registeredAt;
        bool deprecated;
    }

    uint256 public constant MAX_PARENTS = 16;
    uint256 public constant MAX_NAME_BYTES = 128;
    uint256 public constant MAX_URI_BYTES = 512;
    uint256 public constant MAX_LICENSE_BYTES = 64;

    mapping(bytes32 modelHash => Model) private models;
    mapping(bytes32 modelHash => Parent[]) private parentsOf;
    mapping(bytes32 modelHash => bytes32[]) private childrenOf;
    bytes32[] private hashes;

    event ModelRegistered(
        bytes32 indexed modelHash, address indexed publisher, string name, string license, string metadataUri
    );
    event ModelDerived(bytes32 indexed modelHash, bytes32 indexed parentHash, Relation relation);
    event ModelDeprecated(bytes32 indexed modelHash, string reason);

    /// @notice The zero hash is not a model.
    error ZeroModelHash();
    /// @notice This hash is registered already.
    error ModelAlreadyRegistered(bytes32 modelHash);
    /// @notice This hash is not registered.
    error ModelNotRegistered(bytes32 modelHash);
    /// @notice A model needs a name.
    error EmptyName();
    /// @notice A model needs an SPDX license identifier (e.g. "Apache-2.0", or "NOASSERTION").
    error EmptyLicense();
    /// @notice A text field is longer than its limit.
    error FieldTooLong(string field, uint256 length, uint256 maximum);
    /// @notice More parents than MAX_PARENTS.
    error TooManyParents(uint256 count, uint256 maximum);
    /// @notice The same parent is listed twice.
    error DuplicateParent(bytes32 parentHash);
    /// @notice Only the publisher may do this.
    error NotPublisher(bytes32 modelHash, address publisher);
    /// @notice The model is deprecated already.
    error AlreadyDeprecated(bytes32 modelHash);

    /// @notice Registers a model; the sender becomes its publisher.
    function register(
        bytes32 modelHash,
        string calldata name,
        string calldata metadataUri,
        string calldata license,
        Parent[] calldata parents
    ) external {
        if (modelHash == bytes32(0)) revert ZeroModelHash();
        if (models[modelHash].publisher != address(0)) revert ModelAlreadyRegistered(modelHash);
        if (bytes(name).length == 0) revert EmptyName();
        if (bytes(license).length == 0) revert EmptyLicense();
        _checkLength("name", bytes(name).length, MAX_NAME_BYTES);
        _checkLength("metadataUri", bytes(metadataUri).length, MAX_URI_BYTES);
        _checkLength("license", bytes(license).length, MAX_LICENSE_BYTES);
        if (parents.length > MAX_PARENTS) revert TooManyParents(parents.length, MAX_PARENTS);
        for (uint256 i = 0; i < parents.length; i++) {
            bytes32 parentHash = parents[i].modelHash;
            if (models[parentHash].publisher == address(0)) revert ModelNotRegistered(parentHash);
            for (uint256 j = 0; j < i; j++) {
                if (parents[j].modelHash == parentHash) revert DuplicateParent(parentHash);
            }
        }
        models[modelHash] = Model({
            name: name,
            metadataUri: metadataUri,
            license: license,
            publisher: msg.sender,
            registeredAt: uint64(block.timestamp),
            deprecated: false
        });
        hashes.push(modelHash);
        emit ModelRegistered(modelHash, msg.sender, name, license, metadataUri);
        for (uint256 i = 0; i < parents.length; i++) {
            parentsOf[modelHash].push(parents[i]);
            childrenOf[parents[i].modelHash].push(modelHash);
            emit ModelDerived(modelHash, parents[i].modelHash, parents[i].relation);
        }
    }

    /// @notice Marks a model deprecated (it stays readable); publisher only.
    function deprecate(bytes32 modelHash, string calldata reason) external {
        Model storage model = models[modelHash];
        if (model.publisher == address(0)) revert ModelNotRegistered(modelHash);
        if (model.publisher != msg.sender) revert NotPublisher(modelHash, model.publisher);
        if (model.deprecated) revert AlreadyDeprecated(modelHash);
        _checkLength("reason", bytes(reason).length, MAX_URI_BYTES);
        model.deprecated = true;
        emit ModelDeprecated(modelHash, reason);
    }

    /// @notice Whether a hash is registered.
    function isRegistered(bytes32 modelHash) external view returns (bool) {
        return models[modelHash].publisher != address(0);
    }

    /// @notice The entry of a registered model.
    function getModel(bytes32 modelHash) external view returns (Model memory) {
        Model memory model = models[modelHash];
        if (model.publisher == address(0)) revert ModelNotRegistered(modelHash);
        return model;
    }

    /// @notice The parents of a model, with relations.
    function getParents(bytes32 modelHash) external view returns (Parent[] memory) {
        return parentsOf[modelHash];
    }

    /// @notice The models registered as derived from this one.
    function getChildren(bytes32 modelHash) external view returns (bytes32[] memory) {
        return childrenOf[modelHash];
    }

    /// @notice How many models are registered.
    function modelCount() external view returns (uint256) {
        return hashes.length;
    }

    /// @notice Registered hashes in registration order, `limit` from `offset`.
    function modelHashes(uint256 offset, uint256 limit) external view returns (bytes32[] memory page) {
        uint256 end = offset + limit;
        if (end > hashes.length) end = hashes.length;
        if (offset >= end) return new bytes32[](0);
        page = new bytes32[](end - offset);
        for (uint256 i = offset; i < end; i++) {
            page[i - offset] = hashes[i];
        }
    }

    function _checkLength(string memory field, uint256 length, uint256 maximum) private pure {
        if (length > maximum) revert FieldTooLong(field, length, maximum);
    }
}
